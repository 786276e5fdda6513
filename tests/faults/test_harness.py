"""The fault table itself: a case records what was expected and what was observed."""


def test_a_case_records_expected_and_observed(fault_case):
    case = fault_case("harness: a case is recorded", expected="recorded")
    case.observed = "recorded"
    assert case.observed == case.expected
