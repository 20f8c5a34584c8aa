"""rank_classes and ensemble_rank_classes vs faiss IndexFlatIP, and rank_classes on a memory-mapped 1M gallery.

Three cases, each printed as its own table from one run:

1. Single model at Hotel-ID scale (SYSTEMS.md section 1): a 44,703 x 4,096 float32 gallery of
   3,116 classes and 5,000 queries; ``rank_classes`` vs faiss ``IndexFlatIP`` (k=50 rows, then
   unique classes), both returning the top-5 unique classes by cosine similarity.
   Goal: time <= 1.1x faiss, and < 1 GB of memory beyond the loaded gallery and queries.
2. Two-model ensemble on the same rows (a second 2,048-d model): ``ensemble_rank_classes`` vs
   faiss ``IndexFlatIP`` on each model's L2-normalised embeddings scaled by sqrt(weight) and
   concatenated, so that the inner product is the weighted sum of cosine similarities.
   The weights are unequal (1.0, 0.5) so that a wrong scaling would show in the agreement.
   Goal: time <= 1.1x faiss; the top-5 answers should agree on (nearly) every query.
3. A 1,000,000 x 512 float32 gallery (1.9 GB, 100,000 classes) written to a temporary ``.npy``
   in blocks and ranked by ``rank_classes`` through ``np.load(..., mmap_mode="r")`` with 1,000
   queries. Goal: peak memory increase < 25% of the gallery's size. Skipped, with the reason
   printed, when the temporary folder has < 5 GB free.

Each method runs in its own subprocess (so peak memory is its own): the worker loads the arrays,
resets the kernel's peak-RSS mark, ranks, and reports the peak's increase (``_PeakMemory``).
Methods alternate over rounds so load from other processes hits both alike; the fastest round
and the median of the per-round ratios are reported. Both use every core (NumPy's BLAS and
faiss's OpenMP) and include L2 normalisation in their time.

    python benchmarks/retrieval.py            # the sizes above, 2 rounds
    python benchmarks/retrieval.py --smoke    # tiny sizes for every case, < 60 s; faiss skipped if absent
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from _record import emit, result_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SINGLE = ("rank_classes", "faiss_flat_ip")
ENSEMBLE = ("ensemble_rank_classes", "faiss_ensemble_ip")
MEMMAP = "rank_classes_memmap"
METHODS = SINGLE + ENSEMBLE + (MEMMAP,)
FAISS_METHODS = ("faiss_flat_ip", "faiss_ensemble_ip")
MIN_FREE_BYTES = 5 << 30  # room for the 1.9 GB memory-mapped gallery plus everything else in /tmp
AGREEMENT_GOAL = ">= 0.99"  # "(nearly) every query": faiss sees only its top faiss_k rows, and near-ties may flip


def _status_mb(*names):
    """Fields of /proc/self/status (Linux) in MB, e.g. ``_status_mb("RssAnon:", "RssFile:")``."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name = line.split(":", 1)[0] + ":"
            if name in names:
                fields[name] = int(line.split()[1]) / 1024  # kB
    return tuple(fields[name] for name in names)


class _PeakMemory:
    """Peak resident memory of this process from now on, in MB.

    ru_maxrss cannot be the baseline: subprocess starts workers with vfork/posix_spawn, and the
    kernel carries the parent's high-water mark across exec, so a worker's ru_maxrss starts at
    the peak of the parent that generated the data (GBs here) and hides any increase below
    it. Instead the kernel's own mark (VmHWM) is reset to the current RSS (``5`` into
    /proc/self/clear_refs, Linux >= 4.0) and read back at the end: exact, no sampling. Where
    clear_refs is not writable this falls back to ru_maxrss.
    """

    def __init__(self):
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self.exact = True
            (self.base,) = _status_mb("VmRSS:")
        except OSError:
            self.exact = False
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

    def increase_mb(self):
        if self.exact:
            return _status_mb("VmHWM:")[0] - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - self.base


class _PeakRss(threading.Thread):
    """Samples (RssAnon, RssFile) every ``interval`` s and keeps the maxima.

    Why not the peak RSS alone: it counts every page of a memory map that was touched as resident,
    so streaming a 1.9 GB ``.npy`` through ``mmap_mode="r"`` reads as ~1.9 GB of memory even
    though those pages are clean page cache the kernel drops under pressure, without swap.
    What the ranking really allocates is anonymous memory (RssAnon). The chunk-sized buffers are
    reallocated for every one of the hundreds of gallery chunks, so a 2 ms sample catches
    the steady-state peak; a spike shorter than that could be missed.
    """

    def __init__(self, interval=0.002):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_anon, self.peak_file = _status_mb("RssAnon:", "RssFile:")
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            self.sample()
            time.sleep(self.interval)

    def sample(self):
        anon, file = _status_mb("RssAnon:", "RssFile:")
        self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)

    def stop(self):
        self._done.set()
        self.join()
        self.sample()


def _unique_first(labels, k):
    """First k distinct labels of each row (rows are best first); -1 pads rows with fewer."""
    same = labels[:, :, None] == labels[:, None, :]
    repeated = np.tril(same, k=-1).any(axis=2)
    order = np.argsort(repeated, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(labels, order, axis=1)
    out[np.take_along_axis(repeated, order, axis=1)] = -1
    return out


def _faiss_search(gallery, query, labels, k, faiss_k):
    """IndexFlatIP over already normalised rows: top ``faiss_k`` rows, then the first k unique classes."""
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    _, neighbours = index.search(query, faiss_k)
    return _unique_first(labels[neighbours], k)


def _faiss_weighted_concat(embeddings, weights):
    """concat_m(sqrt(w_m) * normalize(e_m)): on both sides, <q, g> = sum_m w_m cos_m."""
    import faiss

    for part, weight in zip(embeddings, weights):
        faiss.normalize_L2(part)  # in place: no copy charged to faiss
        part *= np.float32(np.sqrt(weight))
    return np.ascontiguousarray(np.concatenate(embeddings, axis=1))


def memmap_worker(data_dir, k):
    sys.path.insert(0, ROOT)
    from keras_fgvc.evaluation.retrieval import rank_classes

    gallery = np.load(os.path.join(data_dir, "gallery.npy"), mmap_mode="r")
    query = np.load(os.path.join(data_dir, "query.npy"))
    labels = np.load(os.path.join(data_dir, "labels.npy"))
    base_anon, base_file = _status_mb("RssAnon:", "RssFile:")
    memory = _PeakMemory()
    sampler = _PeakRss()
    sampler.start()
    start = time.perf_counter()
    rank_classes(query, gallery, labels, k=k, progress=False)
    seconds = time.perf_counter() - start
    sampler.stop()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "anon_mb": sampler.peak_anon - base_anon,
                "file_mb": sampler.peak_file - base_file,
                "rss_mb": memory.increase_mb(),
            }
        )
    )


def worker(method, data_dir, k, faiss_k, weights):
    if method == MEMMAP:
        return memmap_worker(data_dir, k)
    sys.path.insert(0, ROOT)
    gallery = np.load(os.path.join(data_dir, "gallery.npy"))
    query = np.load(os.path.join(data_dir, "query.npy"))
    labels = np.load(os.path.join(data_dir, "labels.npy"))
    if method in ENSEMBLE:
        gallery_b = np.load(os.path.join(data_dir, "gallery_b.npy"))
        query_b = np.load(os.path.join(data_dir, "query_b.npy"))
    if method == "rank_classes":
        from keras_fgvc.evaluation.retrieval import rank_classes

        memory = _PeakMemory()
        start = time.perf_counter()
        ranked, _ = rank_classes(query, gallery, labels, k=k)
    elif method == "ensemble_rank_classes":
        from keras_fgvc.evaluation.ensemble import ensemble_rank_classes

        memory = _PeakMemory()
        start = time.perf_counter()
        ranked, _ = ensemble_rank_classes([query, query_b], [gallery, gallery_b], labels, weights=weights, k=k)
    elif method == "faiss_flat_ip":
        import faiss

        memory = _PeakMemory()
        start = time.perf_counter()
        faiss.normalize_L2(gallery)  # in place: no copy charged to faiss
        faiss.normalize_L2(query)
        ranked = _faiss_search(gallery, query, labels, k, faiss_k)
    else:  # faiss_ensemble_ip
        # loaded before the baseline and the timer, as the other side loads its module
        import faiss

        memory = _PeakMemory()
        start = time.perf_counter()
        combined_gallery = _faiss_weighted_concat([gallery, gallery_b], weights)
        del gallery, gallery_b  # the concatenation replaces them, as a real pipeline would do
        combined_query = _faiss_weighted_concat([query, query_b], weights)
        ranked = _faiss_search(combined_gallery, combined_query, labels, k, faiss_k)
    seconds = time.perf_counter() - start
    np.save(os.path.join(data_dir, f"ranked_{method}.npy"), ranked)
    print(json.dumps({"seconds": seconds, "extra_mb": memory.increase_mb()}))


def run_worker(method, data_dir, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", method, "--data", data_dir]
    command += ["--k", str(args.k), "--faiss-k", str(args.faiss_k), "--weights", args.weights]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker {method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(methods, data_dir, args):
    """Alternate the methods over ``args.rounds`` rounds: {method: [result per round]}, {method: ranked}."""
    results = {m: [] for m in methods}
    for _ in range(args.rounds):
        for method in methods:
            results[method].append(run_worker(method, data_dir, args))
    ranked = {m: np.load(os.path.join(data_dir, f"ranked_{m}.npy")) for m in methods}
    return results, ranked


def print_ratio_table(results, reference_name):
    """Prints the table; returns {method: (best run, median paired ratio or None)}."""
    best = {m: min(r, key=lambda x: x["seconds"]) for m, r in results.items()}
    summary = {}
    reference = best.get(reference_name)
    print(f"{'method':<23}{'best s':>9}{'extra MB':>10}{'best / faiss':>14}{'median paired ratio':>21}")
    for method, runs in results.items():
        ratio, paired = "n/a", "n/a"
        if reference:
            ratio = f"{best[method]['seconds'] / reference['seconds']:.2f}x"
            # runs in the same round are adjacent in time, so their ratio cancels most outside load
            pairs = [a["seconds"] / b["seconds"] for a, b in zip(runs, results[reference_name])]
            paired = f"{statistics.median(pairs):.2f}x"
        print(f"{method:<23}{best[method]['seconds']:>9.2f}{best[method]['extra_mb']:>10.0f}{ratio:>14}{paired:>21}")
        summary[method] = (best[method], statistics.median(pairs) if reference else None)
    return summary


def versus_faiss_rows(summary, ranked, ours, faiss_name, time_goal, args, dims):
    """Result rows: ours / faiss time (median of the per-round ratios) and the share of identical answers."""
    best, paired = summary[ours]
    if faiss_name not in ranked:
        missing = "faiss-cpu not installed: not measured"
        return [result_row(f"{ours} / faiss time", None, time_goal, missing),
                result_row(f"{ours}: identical top-{args.k} answers", None, AGREEMENT_GOAL, missing, unit="")]
    agree = float(np.mean(np.all(ranked[ours] == ranked[faiss_name], axis=1)))
    return [
        result_row(f"{ours} / faiss time", paired, time_goal,
                   f"{best['seconds']:.2f} vs {summary[faiss_name][0]['seconds']:.2f} s best of {args.rounds}, "
                   f"{args.gallery:,} x {dims} gallery, {args.queries:,} queries"),
        result_row(f"{ours}: identical top-{args.k} answers", agree, AGREEMENT_GOAL,
                   f"share of {args.queries:,} queries", unit=""),
    ]


def write_random(path, rows, dim, rng, block_rows=1 << 16):
    """A standard-normal float32 [rows, dim] ``.npy`` written block by block (never whole in memory)."""
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, block_rows):
        stop = min(start + block_rows, rows)
        target[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    target.flush()
    del target
    return rows * dim * 4 / 2**20


def single_and_ensemble(args, methods):
    with tempfile.TemporaryDirectory() as data_dir:
        rng = np.random.default_rng(0)
        gallery_mb = write_random(os.path.join(data_dir, "gallery.npy"), args.gallery, args.dim, rng)
        gallery_b_mb = write_random(os.path.join(data_dir, "gallery_b.npy"), args.gallery, args.dim_b, rng)
        for name, dim in (("query.npy", args.dim), ("query_b.npy", args.dim_b)):
            np.save(os.path.join(data_dir, name), rng.standard_normal((args.queries, dim), dtype=np.float32))
        np.save(os.path.join(data_dir, "labels.npy"), rng.integers(0, args.classes, args.gallery))
        single, single_ranked = compare([m for m in SINGLE if m in methods], data_dir, args)
        ensemble, ensemble_ranked = compare([m for m in ENSEMBLE if m in methods], data_dir, args)

    print(
        f"gallery {args.gallery:,} x {args.dim:,} float32 ({gallery_mb:,.0f} MB), {args.classes:,} classes, "
        f"{args.queries:,} queries, top-{args.k} unique classes; best of {args.rounds} round(s)"
    )
    single_summary = print_ratio_table(single, "faiss_flat_ip")
    if "faiss_flat_ip" in single_ranked:
        agree = np.mean(np.all(single_ranked["rank_classes"] == single_ranked["faiss_flat_ip"], axis=1))
        print(f"identical top-{args.k} rankings: {agree:.2%} of queries (faiss sees only its top-{args.faiss_k} rows)")
    print("goal: rank_classes <= 1.10x faiss time, < 1024 MB extra memory")

    print()
    print(
        f"2-model ensemble, weights {args.weights}: galleries {args.gallery:,} x ({args.dim:,} + {args.dim_b:,}) "
        f"float32 ({gallery_mb + gallery_b_mb:,.0f} MB), same classes and queries; best of {args.rounds} round(s)"
    )
    ensemble_summary = print_ratio_table(ensemble, "faiss_ensemble_ip")
    if "faiss_ensemble_ip" in ensemble_ranked:
        same = ensemble_ranked["ensemble_rank_classes"] == ensemble_ranked["faiss_ensemble_ip"]
        agree = np.mean(np.all(same, axis=1))
        print(
            f"identical top-{args.k} rankings: {agree:.2%} of queries "
            f"(faiss: sqrt(weight)-scaled concatenation, top-{args.faiss_k} rows)"
        )
    print("goal: ensemble_rank_classes <= 1.10x faiss time")
    extra_mb = single_summary["rank_classes"][0]["extra_mb"]
    return [
        *versus_faiss_rows(single_summary, single_ranked, "rank_classes", "faiss_flat_ip", "<= 1.1x", args,
                           f"{args.dim:,}"),
        result_row("rank_classes extra memory", extra_mb, "<= 1024", "beyond the loaded gallery and queries",
                   unit=" MB"),
        *versus_faiss_rows(ensemble_summary, ensemble_ranked, "ensemble_rank_classes", "faiss_ensemble_ip",
                           "<= 1.1x", args, f"({args.dim:,} + {args.dim_b:,})"),
    ]


def memory_mapped(args):
    gallery_bytes = args.mm_gallery * args.mm_dim * 4
    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    need = 2 * gallery_bytes if args.smoke else max(MIN_FREE_BYTES, 2 * gallery_bytes)
    title = (
        f"memory-mapped gallery {args.mm_gallery:,} x {args.mm_dim:,} float32 "
        f"({gallery_bytes / 2**20:,.0f} MB on disk), "
        f"{args.mm_classes:,} classes, {args.mm_queries:,} queries, top-{args.k} unique classes"
    )
    case = f"memory-mapped {args.mm_gallery:,} x {args.mm_dim:,} gallery: peak anon / gallery size"
    if free < need:
        reason = f"skipped, {folder} has {free / 2**30:.1f} GB free and this case needs {need / 2**30:.1f} GB"
        print(f"{title}: {reason}")
        return [result_row(case, None, "<= 0.25x", reason)]
    with tempfile.TemporaryDirectory() as data_dir:
        rng = np.random.default_rng(1)
        gallery_mb = write_random(os.path.join(data_dir, "gallery.npy"), args.mm_gallery, args.mm_dim, rng)
        query = rng.standard_normal((args.mm_queries, args.mm_dim), dtype=np.float32)
        np.save(os.path.join(data_dir, "query.npy"), query)
        np.save(os.path.join(data_dir, "labels.npy"), rng.integers(0, args.mm_classes, args.mm_gallery))
        result = run_worker(MEMMAP, data_dir, args)
    print(title)
    header = f"{'method':<23}{'s':>7}{'peak anon MB':>14}{'anon / gallery':>16}"
    print(header + f"{'peak RSS MB':>13}{'RSS / gallery':>15}")
    print(
        f"{MEMMAP:<23}{result['seconds']:>7.2f}{result['anon_mb']:>14.0f}{result['anon_mb'] / gallery_mb:>15.3f}x"
        f"{result['rss_mb']:>13.0f}{result['rss_mb'] / gallery_mb:>14.3f}x"
    )
    print(
        f"peak anon = sampled RssAnon increase (what the ranking allocates); peak RSS also counts the "
        f"{result['file_mb']:,.0f} MB of touched, reclaimable memory-mapped pages (RssFile increase)"
    )
    print("goal: peak anon < 0.25x the gallery's size")
    return [result_row(case, result["anon_mb"] / gallery_mb, "<= 0.25x",
                       f"{result['anon_mb']:.0f} MB of {gallery_mb:,.0f} MB, {result['seconds']:.2f} s")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=44_703)
    parser.add_argument("--dim", type=int, default=4_096)
    parser.add_argument("--dim-b", type=int, default=2_048, help="embedding size of the ensemble's second model")
    parser.add_argument("--weights", default="1.0,0.5", help="ensemble weights, comma-separated")
    parser.add_argument("--classes", type=int, default=3_116)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--mm-gallery", type=int, default=1_000_000)
    parser.add_argument("--mm-dim", type=int, default=512)
    parser.add_argument("--mm-classes", type=int, default=100_000)
    parser.add_argument("--mm-queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--faiss-k", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--smoke", action="store_true", help="2,000 x 128 (+ 64) galleries, 20,000 x 64 memory map, 1 round"
    )
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        weights = [float(w) for w in args.weights.split(",")]
        return worker(args.worker, args.data, args.k, args.faiss_k, weights)
    if args.smoke:
        args.gallery, args.dim, args.dim_b, args.classes, args.queries, args.rounds = 2_000, 128, 64, 100, 200, 1
        args.mm_gallery, args.mm_dim, args.mm_classes, args.mm_queries = 20_000, 64, 2_000, 100

    methods = list(METHODS)
    try:
        import faiss  # noqa: F401  (the [bench] extra)
    except ImportError:
        if not args.smoke:
            raise SystemExit("faiss-cpu is needed for the full benchmark: pip install 'keras_fgvc[bench]'")
        methods = [m for m in methods if m not in FAISS_METHODS]
        print("note: faiss-cpu not installed (pip install 'keras_fgvc[bench]'); faiss columns skipped")

    rows = single_and_ensemble(args, methods)
    print()
    rows += memory_mapped(args)
    emit("retrieval", rows)


if __name__ == "__main__":
    main()
