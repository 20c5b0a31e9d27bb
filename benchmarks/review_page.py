"""Review item page: the time until a real-size case's item page is ready, against a static file server.

Run: ``.venv/bin/python benchmarks/review_page.py [--fov 250 250 180] [--voxel 0.7] [--items 5]``

1. One synthetic case (seed 5) whose label map is resampled (nearest) onto a real-size MR grid (``--voxel`` mm
   isotropic over ``--fov`` mm, about 33 million voxels by default) with a synthetic MR image (``mri.image``) on
   that grid; ``neckmatch run --no-maps``.
2. ``neckmatch serve`` as a real server. "Ready" = the item page's HTML, then (in parallel, as the browser asks
   for them) the label map and the image around the node, and the 3-D map GLB. Cold: the first item after the
   server started (reads the case, the image, builds the GLB); warm: the median of the next ``--items`` items
   (other nodes, so other boxes; the GLB is cached).
3. Baseline in the same run: a plain static file server (``http.server``, threads) serving files of exactly the
   sizes the item page served, fetched the same way. Prints both and their ratio.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from review import PW, _client, serve  # benchmarks/review.py: the same login and server start


def real_size_case(case_dir: Path, fov_mm: list[float], voxel_mm: float) -> tuple[int, ...]:
    """Resample the case's label map (nearest) onto a ``voxel_mm`` grid over ``fov_mm`` centred on it, write it
    and a synthetic MR image on that grid (``mri.image``); returns the grid's shape."""
    import nibabel as nib

    from neckmatch.io.labelmap import read_label_map, write_label_map
    from neckmatch.model import LabelMap
    from neckmatch.synth.mri import synth_image

    lm = read_label_map(case_dir / "mri" / "nodes.nii.gz")
    centre = lm.affine @ np.append((np.array(lm.data.shape) - 1) / 2, 1.0)
    shape = tuple(int(round(f / voxel_mm)) for f in fov_mm)
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = centre[:3] - voxel_mm * (np.array(shape) - 1) / 2
    to_src = np.linalg.inv(lm.affine) @ aff
    big = np.zeros(shape, dtype=lm.data.dtype)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for k in range(shape[2]):  # slice by slice: bounded memory
        src = np.rint(to_src[:3, 0, None, None] * ii + to_src[:3, 1, None, None] * jj
                      + to_src[:3, 2, None, None] * k + to_src[:3, 3, None, None]).astype(int)
        ok = np.all((src >= 0) & (src < np.array(lm.data.shape)[:, None, None]), axis=0)
        big[ok, k] = lm.data[src[0][ok], src[1][ok], src[2][ok]]
    big_lm = LabelMap(big, aff)
    write_label_map(case_dir / "mri" / "nodes.nii.gz", big_lm)
    img = nib.Nifti1Image(synth_image(big_lm), aff)
    img.header.set_xyzt_units("mm")
    nib.save(img, case_dir / "mri" / "image.nii.gz")
    doc = json.loads((case_dir / "case.json").read_text())
    doc["mri"]["image"] = "mri/image.nii.gz"
    (case_dir / "case.json").write_text(json.dumps(doc))
    return shape


def page_ready(get: Any, page: str, assets: list[str]) -> tuple[float, list[int]]:
    """Seconds until ``page`` and then (in parallel) ``assets`` are in, and the sizes served (bytes)."""
    t0 = time.perf_counter()
    first = get(page)
    with ThreadPoolExecutor(len(assets)) as pool:
        rest = list(pool.map(get, assets))
    return time.perf_counter() - t0, [len(first)] + [len(b) for b in rest]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def static_baseline(sizes: list[int], repeats: int) -> float:
    """Median seconds to fetch files of ``sizes`` bytes (first alone, then the rest in parallel) from a
    threaded ``http.server`` on localhost."""
    import httpx2 as httpx

    with tempfile.TemporaryDirectory() as tmp:
        names = [f"f{k}" for k in range(len(sizes))]
        for name, n in zip(names, sizes, strict=True):
            Path(tmp, name).write_bytes(os.urandom(n))
        handler = functools.partial(_Quiet, directory=tmp)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{srv.server_address[1]}/"
        try:
            with httpx.Client(timeout=600) as c:
                def get(url: str) -> bytes:
                    return bytes(c.get(base + url).content)

                times = [page_ready(get, names[0], names[1:])[0] for _ in range(repeats)]
        finally:
            srv.shutdown()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fov", type=float, nargs=3, default=[250.0, 250.0, 180.0])
    ap.add_argument("--voxel", type=float, default=0.7)
    ap.add_argument("--items", type=int, default=5)
    args = ap.parse_args()
    from neckmatch.cohort import run_cohort
    from neckmatch.review.auth import add_user
    from neckmatch.review.commands import open_db, resolve_url
    from neckmatch.synth import generate_cohort

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (case_dir,) = generate_cohort(1, 5, root / "cohort")
        t0 = time.perf_counter()
        shape = real_size_case(case_dir, args.fov, args.voxel)
        print(f"real-size grid {shape} ({np.prod(shape) / 1e6:.0f} M voxels, {args.voxel} mm), "
              f"image {(case_dir / 'mri' / 'image.nii.gz').stat().st_size / 1e6:.0f} MB gz, made in "
              f"{time.perf_counter() - t0:.0f} s")
        run_cohort(root / "cohort", root / "results", workers=1, maps=False)
        with open_db(resolve_url(None, root / "results")) as db:
            add_user(db, "rad1", "radiologist", PW)
        with serve(root / "results") as base:
            c = _client(base, "rad1")
            cases = c.get("/api/cases").json()
            assert cases, "neckmatch run failed on the case (a field of view too small for its nodes?)"
            case_pk = cases[0]["case"]
            items = [q["item"] for q in c.get("/api/queue").json()][: args.items + 1]

            def get(url: str) -> bytes:
                r = c.get(url)
                assert r.status_code == 200, (url, r.status_code)
                return bytes(r.content)

            runs = []
            for item in items:
                page = f"/cases/{case_pk}/items/{item}"
                runs.append(page_ready(get, page, [page + "/labels.nii.gz", page + "/image.nii.gz",
                                                   f"/cases/{case_pk}/map.glb"]))
    cold, sizes = runs[0]
    warm = statistics.median(t for t, _ in runs[1:]) if len(runs) > 1 else float("nan")
    warm_sizes = runs[-1][1]
    base_s = static_baseline(warm_sizes, 7)
    print(f"served: html {sizes[0] / 1e3:.0f} kB, labels {sizes[1] / 1e3:.0f} kB, image {sizes[2] / 1e3:.0f} kB, "
          f"glb {sizes[3] / 1e3:.0f} kB")
    print(f"item page ready: cold (first item after start) {cold:.2f} s; warm median {warm * 1000:.0f} ms over "
          f"{len(runs) - 1} items")
    print(f"static file server, same sizes: median {base_s * 1000:.0f} ms -> ratio warm / static "
          f"{warm / base_s:.1f}, cold / static {cold / base_s:.1f}")


if __name__ == "__main__":
    main()
