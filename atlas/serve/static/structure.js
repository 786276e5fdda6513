// The structure page: the 3D model coloured by pLDDT (B-factors) with 3Dmol.js, and the PAE heatmap.
"use strict";

function plddtColour(value) {
  if (value >= 90) return "#0053d6";
  if (value >= 70) return "#65cbf3";
  if (value >= 50) return "#ffdb13";
  return "#ff7d45";
}

async function drawStructure() {
  const element = document.getElementById("viewer");
  const response = await fetch(element.dataset.cifUrl);
  if (!response.ok) {
    element.textContent = "structure not available (" + response.status + ")";
    return;
  }
  const viewer = $3Dmol.createViewer(element, { backgroundColor: "white" });
  viewer.addModel(await response.text(), "cif");
  viewer.setStyle({}, { cartoon: { colorfunc: (atom) => plddtColour(atom.b) } });
  viewer.zoomTo();
  viewer.render();
  // where the drawing is, for the headless browser test (tests/test_serve.py)
  const box = element.getBoundingClientRect();
  document.body.dataset.viewerBox = [box.left, box.top, box.width, box.height].map(Math.round).join(",");
  document.body.dataset.viewer = "drawn";
}

async function drawPae() {
  const canvas = document.getElementById("pae");
  if (!canvas) return;
  const response = await fetch(canvas.dataset.paeUrl);
  if (!response.ok) return;
  const step = parseFloat(response.headers.get("X-PAE-Step") || "0.5");
  const codes = new Uint8Array(await response.arrayBuffer());
  const length = parseInt(canvas.dataset.length, 10);
  const context = canvas.getContext("2d");
  const image = context.createImageData(length, length);
  for (let i = 0; i < codes.length; i++) {
    const t = Math.min(1, (codes[i] * step) / 30);  // 0 A dark green, >= 30 A white
    image.data[4 * i] = Math.round(15 + t * 240);
    image.data[4 * i + 1] = Math.round(100 + t * 155);
    image.data[4 * i + 2] = Math.round(15 + t * 240);
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  document.body.dataset.pae = "drawn";
}

drawStructure();
drawPae();
