"""One writer per outdir: the lock names its holder, and a holder that died leaves no lock behind."""

import os
import subprocess
import sys

import pytest

from atlas.lock import OutdirLock, OutdirLocked

TAKE_AND_WAIT = (
    "import sys, time; from atlas.lock import OutdirLock; lock = OutdirLock(sys.argv[1]).acquire();"
    " print('held', flush=True); time.sleep(60)"
)


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path):
    command = [sys.executable, "-c", TAKE_AND_WAIT, str(tmp_path)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutdirLocked, match=rf"pid {holder.pid} on host {os.uname().nodename}, started"):
            OutdirLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # killed without releasing: the kernel dropped the lock; the next run takes it and sees the old record
    lock = OutdirLock(tmp_path).acquire()
    assert lock.previous["pid"] == holder.pid
    lock.release()
    assert OutdirLock(tmp_path).acquire().previous == {}
