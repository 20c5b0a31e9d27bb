// neckmatch review: keyboard shortcuts, the MR label-map viewer (niivue) and the 3-D map (model-viewer).
// No inline scripts (Content-Security-Policy script-src 'self'); everything comes from /static.
"use strict";

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const t = event.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
  const el = document.querySelector(`[data-key="${CSS.escape(event.key)}"]`);
  if (!el) return;
  event.preventDefault();
  el.click();
});

// Colour-blind-safe label colours (Okabe-Ito): 1 node under review, 2-10 candidates, 11 other nodes.
const LUT = (() => {
  const R = [0], G = [0], B = [0], A = [0], I = [0], labels = [""];
  const push = (i, rgb, name) => { I.push(i); R.push(rgb[0]); G.push(rgb[1]); B.push(rgb[2]); A.push(255); labels.push(name); };
  push(1, [213, 94, 0], "under review");
  for (let k = 2; k <= 10; k++) push(k, [0, 114, 178], `candidate ${k - 1}`);
  push(11, [153, 153, 153], "other node");
  return { R, G, B, A, I, labels };
})();

async function startViewer() {
  const box = document.getElementById("mr-viewer");
  if (!box || !window.niivue) return;
  const canvas = document.getElementById("mr-canvas");
  const never = window.niivue.SHOW_RENDER ? window.niivue.SHOW_RENDER.NEVER : 0;  // three planes; 3-D: the map
  const nv = new window.niivue.Niivue({ backColor: [1, 1, 1, 1], crosshairColor: [0, 0.62, 0.45, 1],
                                        dragAndDropEnabled: false, isColorbar: false, multiplanarShowRender: never });
  await nv.attachToCanvas(canvas);
  // with an MR image (display only): the image in grey under the label map (70 % opaque)
  const layers = box.dataset.image
    ? [{ url: box.dataset.image, name: "image.nii.gz", colormap: "gray" },
       { url: box.dataset.labels, name: "labels.nii.gz", opacity: 0.7 }]
    : [{ url: box.dataset.labels, name: "labels.nii.gz" }];
  await nv.loadVolumes(layers);
  nv.volumes[nv.volumes.length - 1].setColormapLabel(LUT);
  nv.setSliceType(window.niivue.SLICE_TYPE ? window.niivue.SLICE_TYPE.MULTIPLANAR : 3);
  const centre = (box.dataset.centre || "").split(",").filter((s) => s !== "").map(Number);
  if (centre.length === 3) nv.scene.crosshairPos = nv.mm2frac(centre);
  nv.updateGLVolume();
  box.dataset.layers = String(nv.volumes.length);
  box.dataset.ready = "1";
}

function startMap() {
  const button = document.getElementById("show-map");
  const map = document.getElementById("map3d");
  if (!button || !map) return;
  button.addEventListener("click", () => {
    map.hidden = false;
    if (!map.getAttribute("src")) map.setAttribute("src", map.dataset.src);
  });
}

window.addEventListener("DOMContentLoaded", () => {
  startMap();
  startViewer().catch((err) => {
    const box = document.getElementById("mr-viewer");
    if (box) box.dataset.error = String(err);
  });
});
