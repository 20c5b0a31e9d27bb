"""A self-contained viewer page for a case's GLB: opens from disk in a browser, no network, no server.

The page inlines three.js r147 (vendored from the npm registry under ``neckmatch/viz/static/three-0.147.0``,
MIT licence: ``three.min.js`` and the classic-script ``GLTFLoader`` and ``OrbitControls``) and the GLB itself
(base64, no Draco compression), so one file holds everything and ``file://`` needs no fetch. It shows the levels
(each toggleable, both sides together), the reference structures, the containers and the registered specimen nodes
(toggleable), and the MR nodes: clicking one (or a specimen node) shows its id, side, level, match and status
from the GLB's ``extras``.
"""

from __future__ import annotations

import base64
import html
import json
from functools import cache
from importlib import resources
from pathlib import Path

from neckmatch.io.atomic import write_text
from neckmatch.viz.colors import OUTCOME_LABELS, SPECIMEN_COLOR
from neckmatch.viz.scene import Scene

__all__ = ["THREE_VERSION", "viewer_html", "write_viewer"]

THREE_VERSION = "0.147.0"
_VENDOR = ("three.min.js", "GLTFLoader.js", "OrbitControls.js")


@cache
def _vendored() -> str:
    """The three.js scripts, each in its own ``<script>`` element (read once per process)."""
    folder = resources.files("neckmatch.viz") / "static" / f"three-{THREE_VERSION}"
    parts = []
    for name in _VENDOR:
        text = (folder / name).read_text(encoding="utf-8").replace("</script", "<\\/script")
        parts.append(f"<script>/* three.js {THREE_VERSION} {name} (MIT) */\n{text}\n</script>")
    return "\n".join(parts)


_STYLE = """
body{margin:0;font:13px system-ui,sans-serif;color:#222;display:flex;height:100vh}
#side{width:270px;padding:10px 12px;overflow:auto;border-right:1px solid #ccc;background:#fafafa}
#view{flex:1;position:relative}#info{position:absolute;left:10px;bottom:10px;background:#fff;
border:1px solid #999;padding:6px 9px;min-width:180px;white-space:pre;font:12px monospace}
h1{font-size:15px;margin:0 0 8px}h2{font-size:13px;margin:12px 0 4px}label{display:block;margin:2px 0}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #777;margin:0 5px -2px 2px}
"""

_SCRIPT = """
const meta = JSON.parse(document.getElementById('meta').textContent);
const glb = Uint8Array.from(atob(document.getElementById('glb').textContent.trim()), c => c.charCodeAt(0)).buffer;
const view = document.getElementById('view'), info = document.getElementById('info');
const renderer = new THREE.WebGLRenderer({antialias: true});
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setClearColor(0xffffff);
view.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.add(new THREE.HemisphereLight(0xffffff, 0x666666, 1.0));
const sun = new THREE.DirectionalLight(0xffffff, 0.6); sun.position.set(0.3, 1, 1); scene.add(sun);
const camera = new THREE.PerspectiveCamera(30, 1, 0.001, 10);
const controls = new THREE.OrbitControls(camera, renderer.domElement);
const groups = {};  // toggle key -> objects
let clickable = [];
function resize() {
  const w = view.clientWidth, h = view.clientHeight;
  renderer.setSize(w, h); camera.aspect = w / h; camera.updateProjectionMatrix();
}
window.addEventListener('resize', resize);
function keyOf(d) {
  if (d.kind === 'level') return 'level ' + d.level;
  if (d.kind === 'anatomy') return 'reference structures';
  if (d.kind === 'container') return 'pathology containers';
  if (d.kind === 'specimen' || d.kind === 'specimen_link') return 'registered specimen nodes';
  return 'MR nodes';
}
new THREE.GLTFLoader().parse(glb, '', gltf => {
  scene.add(gltf.scene);
  gltf.scene.traverse(o => {
    const d = o.userData || {};
    if (!d.kind) return;
    (groups[keyOf(d)] = groups[keyOf(d)] || []).push(o);
    if (d.kind === 'node' || d.kind === 'specimen') clickable.push(o);
    if (o.material && d.kind === 'level') { o.material.depthWrite = false; o.renderOrder = 1; }
    if (o.material && d.kind === 'anatomy') { o.material.depthWrite = false; o.renderOrder = 2; }
  });
  const box = new THREE.Box3().setFromObject(gltf.scene), c = box.getCenter(new THREE.Vector3());
  const r = box.getSize(new THREE.Vector3()).length();
  controls.target.copy(c); camera.position.set(c.x, c.y, c.z + 1.6 * r); controls.update();
  const list = document.getElementById('toggles');
  Object.keys(groups).sort((a, b) => meta.order.indexOf(a) - meta.order.indexOf(b)).forEach(k => {
    const lab = document.createElement('label'), box = document.createElement('input');
    box.type = 'checkbox'; box.checked = true;
    box.onchange = () => groups[k].forEach(o => { o.visible = box.checked; });
    const sw = document.createElement('span'); sw.className = 'sw';
    sw.style.background = meta.swatch[k] || 'transparent';
    lab.append(box, sw, k); list.appendChild(lab);
  });
  resize(); animate();
}, err => { info.textContent = 'could not read the GLB: ' + err; });
const ray = new THREE.Raycaster(), mouse = new THREE.Vector2();
renderer.domElement.addEventListener('click', e => {
  const rect = renderer.domElement.getBoundingClientRect();
  mouse.set(((e.clientX - rect.left) / rect.width) * 2 - 1, -((e.clientY - rect.top) / rect.height) * 2 + 1);
  ray.setFromCamera(mouse, camera);
  const hit = ray.intersectObjects(clickable.filter(o => o.visible), false)[0];
  if (!hit) { info.textContent = 'click a node'; return; }
  const d = hit.object.userData;
  info.textContent = meta.fields.filter(f => d[f] !== undefined && d[f] !== null)
    .map(f => f.padEnd(14) + d[f]).join('\\n');
});
function animate() { requestAnimationFrame(animate); controls.update(); renderer.render(scene, camera); }
"""

_FIELDS = ["node", "image", "specimen_node", "mr_node", "side", "level",
           "category", "outcome", "match_kind", "path_node", "path_status", "mr_call",
           "confidence", "decision", "short_axis_mm", "volume_mm3", "boundary_mm", "runner_up"]


def _hex(rgb: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def viewer_html(scene: Scene, glb: bytes) -> str:
    """The viewer page of ``scene`` with its GLB bytes inlined (see the module docstring)."""
    levels = list(scene.level_legend)
    order = [f"level {lv}" for lv in levels] + ["reference structures", "MR nodes", "pathology containers",
                                                 "registered specimen nodes"]
    swatch = {f"level {lv}": _hex(c) for lv, c in scene.level_legend.items()}
    if scene.specimen_markers:
        swatch["registered specimen nodes"] = _hex(SPECIMEN_COLOR)
    meta = {"case_id": scene.case_id, "order": order, "swatch": swatch, "fields": _FIELDS}
    legend = "".join(f'<div><span class="sw" style="background:{_hex(c)}"></span>'
                     f"{html.escape(OUTCOME_LABELS.get(k, k))}</div>" for k, c in scene.node_legend.items())
    if scene.specimen_markers:
        legend += (f'<div><span class="sw" style="background:{_hex(SPECIMEN_COLOR)}"></span>registered specimen '
                   "node (ex vivo scan), line to its MR node</div>")
    title = html.escape(scene.title)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(scene.case_id)} '
        f"neck-level map</title><style>{_STYLE}</style></head><body>\n"
        f'<div id="side"><h1>{title}</h1><div>Drag to turn, wheel to zoom, right-drag to pan; click a node.</div>'
        f'<h2>Show</h2><div id="toggles"></div><h2>MR nodes</h2>{legend}'
        '<h2>Axes</h2><div>patient left = +x, superior = up, anterior = towards you at start</div></div>\n'
        '<div id="view"><div id="info">click a node</div></div>\n'
        f'<script type="application/json" id="meta">{json.dumps(meta)}</script>\n'
        f'<script type="application/octet-stream" id="glb">{base64.b64encode(glb).decode("ascii")}</script>\n'
        f"{_vendored()}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def write_viewer(scene: Scene, glb: bytes, path: str | Path) -> Path:
    """Write the viewer page of ``scene`` with its GLB bytes (:func:`neckmatch.viz.export.glb_bytes`) inlined."""
    return write_text(viewer_html(scene, glb), path)
