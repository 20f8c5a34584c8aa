"""Load: embedding extraction + ranking of a 200,000-image synthetic gallery in bounded memory.

``gallery_load.py`` runs in its own process (its memory is its own) and reports the peak
anonymous memory of each step above what it held before (the memory-mapped embeddings' file pages
are the kernel's to drop and are not counted). Measured 2026-11-24 on the 2-core machine:
extraction +20 MB for a 49 MB gallery (+13 MB at 50,000 images, +25 MB at 400,000), ranking
2,000 queries x 5,000 classes +120-185 MB at 50,000-400,000 images (the dense 40 MB class table,
16 MB similarity blocks and the allocator's slack; it does not grow with the gallery)."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = 200_000
EXTRACT_BOUND_MB = 0.5 * IMAGES * 64 * 4 / 2**20  # half the gallery: extraction streams, never holds it
RANK_BOUND_MB = 256  # rank_classes' max_dense_bytes: the largest table it allows itself


def test_a_200k_gallery_is_embedded_and_ranked_in_bounded_memory(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "reliability", "gallery_load.py"),
                           str(tmp_path), "--images", str(IMAGES)], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"200k gallery: extraction +{report['extract_peak_mb']:.0f} MB, ranking +{report['rank_peak_mb']:.0f} MB "
          f"(gallery {report['gallery_mb']:.0f} MB)")
    assert report["shape"] == [IMAGES, 64] and report["ids_in_order"]
    # the ranking against NumPy's float64 class maxima over the whole gallery (first 8 queries)
    np.testing.assert_allclose(report["top5_scores"], report["reference_top5_scores"], atol=1e-5)
    assert report["extract_peak_mb"] < EXTRACT_BOUND_MB
    assert report["rank_peak_mb"] < RANK_BOUND_MB
