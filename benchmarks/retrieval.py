"""rank_classes vs faiss IndexFlatIP (k=50, then unique classes): time and peak memory.

The Hotel-ID scale (SYSTEMS.md section 1): a 44,703 x 4,096 float32 gallery of 3,116 classes
and 5,000 queries; both methods return the top-5 unique classes by cosine similarity. Goal:
``rank_classes`` time <= 1.1x faiss, and < 1 GB of memory beyond the loaded gallery and queries.

Each method runs in its own subprocess (so peak RSS is its own): the worker loads the arrays,
records ru_maxrss, ranks, and reports the ru_maxrss increase. Methods alternate over rounds so
load from other processes hits both alike; the fastest round and the median of
the per-round ratios are reported. Both use every core
(NumPy's BLAS and faiss's OpenMP) and include L2 normalisation in their time.

    python benchmarks/retrieval.py            # Hotel-ID scale, 2 rounds
    python benchmarks/retrieval.py --smoke    # 2,000 x 128 gallery, < 60 s; faiss skipped if absent
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("rank_classes", "faiss_flat_ip")


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _unique_first(labels, k):
    """First k distinct labels of each row (rows are best first); -1 pads rows with fewer."""
    same = labels[:, :, None] == labels[:, None, :]
    repeated = np.tril(same, k=-1).any(axis=2)
    order = np.argsort(repeated, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(labels, order, axis=1)
    out[np.take_along_axis(repeated, order, axis=1)] = -1
    return out


def worker(method, data_dir, k, faiss_k):
    sys.path.insert(0, ROOT)
    gallery = np.load(os.path.join(data_dir, "gallery.npy"))
    query = np.load(os.path.join(data_dir, "query.npy"))
    labels = np.load(os.path.join(data_dir, "labels.npy"))
    if method == "rank_classes":
        from keras_fgvc.evaluation.retrieval import rank_classes

        baseline = _maxrss_mb()
        start = time.perf_counter()
        ranked, _ = rank_classes(query, gallery, labels, k=k)
    else:
        import faiss

        baseline = _maxrss_mb()
        start = time.perf_counter()
        faiss.normalize_L2(gallery)  # in place: no copy charged to faiss
        faiss.normalize_L2(query)
        index = faiss.IndexFlatIP(gallery.shape[1])
        index.add(gallery)
        _, neighbours = index.search(query, faiss_k)
        ranked = _unique_first(labels[neighbours], k)
    seconds = time.perf_counter() - start
    np.save(os.path.join(data_dir, f"ranked_{method}.npy"), ranked)
    print(json.dumps({"seconds": seconds, "extra_mb": _maxrss_mb() - baseline}))


def run_worker(method, data_dir, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", method, "--data", data_dir]
    command += ["--k", str(args.k), "--faiss-k", str(args.faiss_k)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=44_703)
    parser.add_argument("--dim", type=int, default=4_096)
    parser.add_argument("--classes", type=int, default=3_116)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--faiss-k", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="2,000 x 128 gallery, 200 queries, 1 round")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.k, args.faiss_k)
    if args.smoke:
        args.gallery, args.dim, args.classes, args.queries, args.rounds = 2_000, 128, 100, 200, 1

    methods = list(METHODS)
    try:
        import faiss  # noqa: F401  (the [bench] extra)
    except ImportError:
        if not args.smoke:
            raise SystemExit("faiss-cpu is needed for the full benchmark: pip install 'keras_fgvc[bench]'")
        methods.remove("faiss_flat_ip")
        print("note: faiss-cpu not installed (pip install 'keras_fgvc[bench]'); faiss column skipped")

    with tempfile.TemporaryDirectory() as data_dir:
        rng = np.random.default_rng(0)
        gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
        np.save(os.path.join(data_dir, "gallery.npy"), gallery)
        gallery_mb = gallery.nbytes / 2**20
        del gallery
        np.save(os.path.join(data_dir, "query.npy"), rng.standard_normal((args.queries, args.dim), dtype=np.float32))
        np.save(os.path.join(data_dir, "labels.npy"), rng.integers(0, args.classes, args.gallery))

        results = {m: [] for m in methods}
        for _ in range(args.rounds):
            for method in methods:
                results[method].append(run_worker(method, data_dir, args))
        best = {m: min(r, key=lambda x: x["seconds"]) for m, r in results.items()}
        ranked = {m: np.load(os.path.join(data_dir, f"ranked_{m}.npy")) for m in methods}

    print(
        f"gallery {args.gallery:,} x {args.dim:,} float32 ({gallery_mb:,.0f} MB), {args.classes:,} classes, "
        f"{args.queries:,} queries, top-{args.k} unique classes; best of {args.rounds} round(s)"
    )
    reference = best.get("faiss_flat_ip")
    print(f"{'method':<16}{'best s':>9}{'extra MB':>10}{'best / faiss':>14}{'median paired ratio':>21}")
    for method in methods:
        ratio, paired = "n/a", "n/a"
        if reference:
            ratio = f"{best[method]['seconds'] / reference['seconds']:.2f}x"
            # runs in the same round are adjacent in time, so their ratio cancels most outside load
            pairs = [a["seconds"] / b["seconds"] for a, b in zip(results[method], results["faiss_flat_ip"])]
            paired = f"{statistics.median(pairs):.2f}x"
        print(f"{method:<16}{best[method]['seconds']:>9.2f}{best[method]['extra_mb']:>10.0f}{ratio:>14}{paired:>21}")
    if reference:
        agree = np.mean(np.all(ranked["rank_classes"] == ranked["faiss_flat_ip"], axis=1))
        print(f"identical top-{args.k} rankings: {agree:.2%} of queries (faiss sees only its top-{args.faiss_k} rows)")
    print("goal: rank_classes <= 1.10x faiss time, < 1024 MB extra memory")


if __name__ == "__main__":
    main()
