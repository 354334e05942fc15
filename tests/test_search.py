"""fda embed / fda search: chunked float16 files, exact flat top-k, planted best matches, optional faiss."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fda.cli import cli
from fda.eval.embeddings import ChunkWriter, EmbeddingStore, flat_search


def write_store(tmp_path, vectors, chunk_size):
    writer = ChunkWriter(str(tmp_path), "videos", chunk_size)
    ids = [f"v{i}" for i in range(len(vectors))]
    for start in range(0, len(vectors), 4):  # arrive in batches that straddle chunk boundaries
        writer.add(vectors[start:start + 4], ids=ids[start:start + 4])
    writer.flush()
    doc = {"videos": {"count": writer.total, "chunks": writer.chunks}, "captions": {"count": 0, "chunks": []}}
    (tmp_path / "embeddings.json").write_text(json.dumps(doc))
    return EmbeddingStore(str(tmp_path)), ids


def test_flat_search_equals_brute_force_across_chunks(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, 8)).astype(np.float32)
    store, ids = write_store(tmp_path, vectors, chunk_size=7)
    assert len(store.doc["videos"]["chunks"]) == 5
    stored = np.concatenate([np.asarray(v, np.float32) for v, _ in store.chunks("videos")])
    assert stored.dtype == np.float32 and np.load(tmp_path / "videos-000000.npy").dtype == np.float16
    query = rng.standard_normal(8).astype(np.float32)
    scores = stored @ query
    expected = [ids[i] for i in np.argsort(-scores, kind="stable")[:6]]
    hits = flat_search(store, "videos", query, 6)
    assert [h.id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted(scores, reverse=True)[:6], rel=1e-6)
    assert len(flat_search(store, "videos", query, 100)) == 30
    assert expected[0] not in [h.id for h in flat_search(store, "videos", query, 6, exclude=[expected[0]])]


def test_ties_keep_the_earlier_row(tmp_path):
    vectors = np.zeros((10, 4), np.float32)
    vectors[[2, 8, 5], 0] = 1.0
    store, _ = write_store(tmp_path, vectors, chunk_size=3)
    hits = flat_search(store, "videos", np.array([1, 0, 0, 0], np.float32), 3)
    assert [h.id for h in hits] == ["v2", "v5", "v8"]


def test_faiss_index_agrees_with_flat_search(tmp_path):
    pytest.importorskip("faiss")
    from fda.eval.embeddings import build_hnsw_index, index_search

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((200, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store, ids = write_store(tmp_path, vectors, chunk_size=64)
    store.doc["index"] = {"file": build_hnsw_index(str(tmp_path), store.doc["videos"]["chunks"], 16)}
    query = vectors[123]
    assert index_search(store, query, 1)[0].id == "v123"
    nearest_other = flat_search(store, "videos", query, 1, exclude=["v123"])[0].id
    assert index_search(store, query, 3, exclude=["v123"])[0].id == nearest_other


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    from fda.model import build_model, get_model_config, save_checkpoint

    torch.manual_seed(1)
    model = build_model(get_model_config("fda-tiny"))
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, model)
    return path


def test_embed_then_search_returns_the_planted_match(eval_shards, checkpoint, tmp_path):
    from fda.eval.encoding import encode_texts
    from fda.model.checkpoint import load_checkpoint

    emb = str(tmp_path / "emb")
    runner = CliRunner()
    result = runner.invoke(cli, ["embed", "--shards", eval_shards, "--checkpoint", checkpoint, "--out", emb,
                                 "--chunk-size", "2", "--decode-threads", "0"])
    assert result.exit_code == 0, result.output + result.stderr
    doc = json.load(open(os.path.join(emb, "embeddings.json")))
    assert doc["videos"]["count"] == 9 and doc["captions"]["count"] == 6 + 15  # test 6 x 1, train 3 x 5
    assert len(doc["videos"]["chunks"]) == 5

    # Plant: overwrite one video (in a middle chunk) with the query's own text embedding.
    model, _ = load_checkpoint(checkpoint)
    query = encode_texts(model, ["a man is cooking"], progress=False)[0]
    chunk = doc["videos"]["chunks"][2]
    path = os.path.join(emb, chunk["name"] + ".npy")
    vectors = np.load(path)
    vectors[1] = query.astype(np.float16)
    np.save(path, vectors)
    planted = json.load(open(os.path.join(emb, chunk["name"] + ".json")))["ids"][1]

    result = runner.invoke(cli, ["search", emb, "a man is cooking", "-k", "3"])
    assert result.exit_code == 0, result.stderr
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[2] == planted
    assert float(lines[0].split()[1]) == pytest.approx(1.0, abs=2e-3)

    # --video: the planted video's nearest caption search and similar-video search run on the stored rows.
    result = runner.invoke(cli, ["search", emb, "--video", planted, "-k", "2"])
    assert result.exit_code == 0 and planted not in result.output  # the query video itself is excluded
    result = runner.invoke(cli, ["search", emb, "--video", planted, "--target", "captions", "-k", "2"])
    assert result.exit_code == 0 and "#" in result.output


def test_search_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["search", str(tmp_path), "cats"])
    assert result.exit_code == 3 and "run fda embed" in result.stderr
    result = runner.invoke(cli, ["search", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one" in result.stderr


def test_text_only_encoder_equals_the_full_model(checkpoint):
    from fda.model import get_tokenizer
    from fda.model.checkpoint import load_checkpoint
    from fda.model.text import load_text_encoder

    texts = ["a man is cooking", "a red square moves to the left on a grey background", ""]
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        full = torch.nn.functional.normalize(model.encode_text(get_tokenizer(model.context_length)(texts)), dim=-1)
    fast = load_text_encoder(checkpoint)
    assert fast is not None
    np.testing.assert_allclose(fast.encode(texts), full.numpy(), atol=1e-5)


def test_search_rejects_an_empty_query_prints_json_and_skips_open_clip(eval_shards, checkpoint, tmp_path):
    import subprocess
    import sys

    emb = str(tmp_path / "emb")
    runner = CliRunner()
    assert runner.invoke(cli, ["embed", "--shards", eval_shards, "--checkpoint", checkpoint, "--out", emb,
                               "--split", "test", "--decode-threads", "0"]).exit_code == 0
    result = runner.invoke(cli, ["search", emb, "  "])
    assert result.exit_code == 2 and "QUERY is empty" in result.stderr
    first = json.load(open(os.path.join(emb, "videos-000000.json")))["ids"][0]
    result = runner.invoke(cli, ["search", emb, "--video", first, "-k", "6", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["video"] == first and [h["rank"] for h in doc["hits"]] == [1, 2, 3, 4, 5]
    assert all(-1.0 <= h["score"] <= 1.0 and round(h["score"], 3) == h["score"] for h in doc["hits"])
    # a caption row a little longer than unit length (float16 rounding does this): shown as +1.000, not +1.0010
    vector = np.load(os.path.join(emb, "videos-000000.npy"))[0].astype(np.float32)
    captions = np.load(os.path.join(emb, "captions-000000.npy"))
    captions[0] = (vector * 1.001).astype(np.float16)
    np.save(os.path.join(emb, "captions-000000.npy"), captions)
    result = runner.invoke(cli, ["search", emb, "--video", first, "--target", "captions", "-k", "1"])
    assert result.exit_code == 0 and result.output.split()[1] == "+1.000", result.output
    code = ("import sys; from fda.config import SearchConfig; from fda.eval.embeddings import run_search; "
            f"hits = run_search(SearchConfig({emb!r}, 'a man is cooking', device='cpu')); "
            "print(len(hits), [m for m in ('open_clip', 'webdataset', 'torchvision') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split(None, 1) == ["6", "[]\n"]
