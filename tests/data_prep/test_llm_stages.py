"""The LLM stages over a real local HTTP server speaking the OpenAI protocol, end to end."""
from __future__ import annotations

import json
import re
import time

import pytest

from common.io import RecordError, read_records, write_records
from data_prep.llm_client import (ChatClient, ClientConfig, LLMError, LLMHTTPError, map_chat,
                                  run_chats)
from data_prep.prompts import SOLVE, load_chat_template
from data_prep.solve import run_solve
from data_prep.synthesize import (clean_tests, failures_path, parse_synth_reply, repair_truncated_json,
                                  ReplyError, run_synthesize)
from tests.data_prep.fake_openai_server import FakeOpenAIServer, Reply

TESTS = [f"assert add({i}, 1) == {i + 1}" for i in range(20)]
GOOD = json.dumps({"question": "Write add(a, b) returning a + b.", "tests": TESTS})


def scripted(body: dict, attempt: int) -> Reply:
    """Synthesis replies chosen by the SCENARIO marker in the seed program."""
    scenario = re.search(r"SCENARIO (\w+)", body["messages"][-1]["content"])[1]
    if scenario == "ok":  # three bad tests among twenty good ones
        return Reply([json.dumps({"question": "Q ok", "tests": TESTS + [7, "print(1)", "assert add(1,"]})])
    if scenario == "fenced":
        return Reply([f"Sure! Here it is:\n```json\n{GOOD}\n```\nHope this helps."])
    if scenario == "truncated":  # cut inside the 6th test: 5 complete tests survive
        cut = GOOD.index(TESTS[5]) + 8
        return Reply([GOOD[:cut]], finish_reason="length")
    if scenario == "malformed":  # complete but invalid JSON (trailing comma): not a truncation
        return Reply(['{"question": "Q", "tests": ["assert add(1, 1) == 2",]}'])
    if scenario == "prose":
        return Reply(["I am sorry, I cannot rewrite this program."])
    if scenario == "no_tests":
        return Reply([json.dumps({"question": "Q", "tests": ["print(add(1, 2))", "add(1, 2) == 3"]})])
    if scenario == "rate_limited" and attempt == 0:
        return Reply(status=429, body='{"error": "slow down"}', headers={"Retry-After": "0.05"})
    if scenario == "server_error" and attempt == 0:
        return Reply(status=500, body="upstream exploded")
    if scenario == "slow" and attempt == 0:
        return Reply([GOOD], delay_s=1.0)  # the client times out at 0.3 s
    return Reply([GOOD])


SCENARIOS = ["ok", "fenced", "truncated", "malformed", "prose", "no_tests", "rate_limited",
             "server_error", "slow"]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with FakeOpenAIServer(scripted) as srv:
        yield srv


def client_for(server: FakeOpenAIServer, **overrides) -> ChatClient:
    cfg = dict(base_url=server.url, model="fake-model", timeout_s=0.3, max_retries=3, backoff_s=0.01,
               backoff_max_s=1.0, concurrency=8, json_mode=True, price_prompt_per_1k=1.0,
               price_completion_per_1k=2.0)
    return ChatClient(ClientConfig(**{**cfg, **overrides}))


def write_seeds(path, scenarios) -> None:
    write_records(path, [{"id": f"seed_{s}", "source": "oss", "instruction": "Add two numbers.",
                          "program": f"def add(a, b):\n    return a + b  # SCENARIO {s}"} for s in scenarios])


def synthesize(tmp_path, client, scenarios=SCENARIOS, **kw):
    seeds, out = tmp_path / "seeds.jsonl", tmp_path / "synth.jsonl"
    if not seeds.exists():
        write_seeds(seeds, scenarios)
    return run_synthesize(seeds, out, client, progress=False, **kw), out


def test_synthesize_end_to_end(tmp_path, server):
    client = client_for(server)
    summary, out = synthesize(tmp_path, client, concurrency=4)

    recs = {r["id"]: r for r in read_records(out)}
    assert sorted(recs) == sorted(f"seed_{s}" for s in
                                  ["ok", "fenced", "truncated", "rate_limited", "server_error", "slow"])
    ok = recs["seed_ok"]
    assert ok["test_cases"] == TESTS and ok["question"] == "Q ok" and ok["source"] == "oss"
    assert ok["program"].startswith("def add(a, b):")
    assert ok["synth"] == {"model": "fake-model", "prompt_tokens": 100, "completion_tokens": 20,
                           "finish_reason": "stop", "tests_dropped": 3, "repaired": False}
    assert recs["seed_fenced"]["test_cases"] == TESTS
    assert recs["seed_truncated"]["test_cases"] == TESTS[:5]
    assert recs["seed_truncated"]["synth"]["repaired"] is True

    fails = {r["id"]: r for r in read_records(failures_path(out))}
    assert sorted(fails) == ["seed_malformed", "seed_no_tests", "seed_prose"]
    assert all(f["kind"] == "reply" and f["reply"] for f in fails.values())
    assert "malformed JSON" in fails["seed_malformed"]["reason"]
    assert fails["seed_prose"]["reason"] == "no JSON object in the reply"
    assert fails["seed_no_tests"]["reason"] == "no valid tests (2 dropped)"

    # One retry each for the 429, the 500 and the timeout; every answer used JSON mode.
    assert client.stats.retries == 3 and len(server.requests) == len(SCENARIOS) + 3
    assert all(b["response_format"] == {"type": "json_object"} for b in server.requests)
    assert all(b["temperature"] == 0.7 and b["max_tokens"] == 8192 for b in server.requests)
    # Usage counts every answered request, good reply or not: 9 x (100 prompt + 20 completion).
    assert (summary.prompt_tokens, summary.completion_tokens) == (900, 180)
    assert summary.cost == pytest.approx(0.9 + 0.36)
    assert (summary.ok, summary.failed, summary.request_failed) == (6, 3, 0)
    assert summary.tests_kept == 20 * 5 + 5 and summary.tests_dropped == 3  # counted on kept records

    # Re-run: everything is settled (records and bad replies alike), so no request goes out.
    before = len(server.requests)
    again, _ = synthesize(tmp_path, client)
    assert len(server.requests) == before and again.skipped == len(SCENARIOS) and again.ok == 0
    assert len(read_records(out)) == 6


def test_retry_after_is_honoured(server):
    server.responder = lambda body, attempt: (
        Reply(status=429, body="busy", headers={"Retry-After": "0.4"}) if attempt == 0 else Reply(["hi"]))
    client = client_for(server, backoff_s=0.001)
    start = time.monotonic()
    result = client.chat([{"role": "user", "content": "x"}])
    assert time.monotonic() - start >= 0.4
    assert result.texts == ["hi"] and client.stats.retries == 1 and len(server.requests) == 2


def test_client_error_is_not_retried_and_hides_the_key(server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY_VAR", "sk-secret-123")
    server.responder = lambda body, attempt: Reply(status=400, body='{"error": "context too long"}')
    client = client_for(server, api_key_env="FAKE_KEY_VAR")
    with pytest.raises(LLMHTTPError) as info:
        client.chat([{"role": "user", "content": "x"}])
    assert info.value.status == 400 and not info.value.fatal
    assert "HTTP 400" in str(info.value) and "context too long" in str(info.value)
    assert len(server.requests) == 1
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in str(info.value) + repr(client)


def test_request_failures_are_recorded_then_retried_on_rerun(tmp_path, server):
    server.responder = lambda body, attempt: Reply(status=503, body="down")
    summary, out = synthesize(tmp_path, client_for(server, max_retries=2), scenarios=["ok"])
    assert summary.request_failed == 1 and len(server.requests) == 3  # first try + 2 retries
    [fail] = read_records(failures_path(out))
    assert fail["kind"] == "request" and "after 3 attempts" in fail["reason"] and "503" in fail["reason"]

    server.responder = scripted
    again, _ = synthesize(tmp_path, client_for(server))
    assert again.ok == 1 and [r["id"] for r in read_records(out)] == ["seed_ok"]


def test_fatal_http_error_stops_the_stage(tmp_path, server):
    server.responder = lambda body, attempt: Reply(status=401, body="bad key")
    with pytest.raises(LLMHTTPError, match="HTTP 401"):
        synthesize(tmp_path, client_for(server), scenarios=["ok", "fenced"], concurrency=1)
    assert len(server.requests) == 1 and read_records(tmp_path / "synth.jsonl") == []


def test_resume_after_a_torn_write(tmp_path, server):
    scenarios = ["ok", "fenced", "rate_limited", "server_error"]
    first, out = synthesize(tmp_path, client_for(server), scenarios=scenarios)
    assert first.ok == 4
    data = out.read_bytes()
    out.write_bytes(data[:-25])  # a crash in the middle of writing the last record
    torn_id = json.loads(data.splitlines()[-1])["id"]

    server.reset_counts()
    again, _ = synthesize(tmp_path, client_for(server))
    asked = [re.search(r"SCENARIO (\w+)", b["messages"][-1]["content"])[1] for b in server.requests]
    assert [f"seed_{s}" for s in asked] == [torn_id] and again.skipped == 3 and again.ok == 1
    ids = [r["id"] for r in read_records(out)]
    assert sorted(ids) == sorted(f"seed_{s}" for s in scenarios)


@pytest.mark.parametrize("stage_limit, client_limit, expected", [(3, 8, 3), (8, 2, 2)])
def test_concurrency_limit(tmp_path, server, stage_limit, client_limit, expected):
    server.responder = lambda body, attempt: Reply([GOOD], delay_s=0.1)
    summary, _ = synthesize(tmp_path, client_for(server, concurrency=client_limit, timeout_s=2.0),
                            scenarios=[f"s{i}" for i in range(12)], concurrency=stage_limit)
    assert summary.ok == 12 and server.max_in_flight == expected


def test_solve_sends_the_prefill_and_returns_whole_answers(tmp_path, server):
    prefill = load_chat_template(SOLVE).messages[-1][1]
    assert prefill.endswith("```python\n")
    server.responder = lambda body, attempt: Reply([f"def f():\n    return {i}\n```" for i in range(body["n"])])
    questions = tmp_path / "questions.jsonl"
    write_records(questions, [
        {"id": "q1", "question": "Return 1.", "test_cases": ["assert f() == 1", "assert f() != 2", "assert 3"]},
        {"id": "q2", "question": "Return 2.", "tests": ["assert f() == 2"],
         "inferences": [{"model_name": "other", "completion_id": 0, "completion": "x"}]},
    ])
    out = tmp_path / "solved.jsonl"
    client = client_for(server, json_mode=False)
    summary = run_solve(questions, out, client, n=3, temperature=0.7, model_name="oracle", progress=False)
    assert summary.ok == 2 and summary.completion_tokens == 2 * 60

    body = next(b for b in server.requests if "Return 1." in b["messages"][0]["content"])
    assert body["messages"][-1] == {"role": "assistant", "content": prefill}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert (body["n"], body["temperature"], body["max_tokens"]) == (3, 0.7, 1024)
    assert "response_format" not in body
    user = body["messages"][0]["content"]
    assert '"""\nReturn 1.\nassert f() == 1\nassert f() != 2\n"""' in user and "assert 3" not in user

    recs = {r["id"]: r for r in read_records(out)}
    assert recs["q1"]["inferences"] == [
        {"model_name": "oracle", "completion_id": i, "completion": f"{prefill}def f():\n    return {i}\n```"}
        for i in range(3)]
    assert [i["model_name"] for i in recs["q2"]["inferences"]] == ["other"] + ["oracle"] * 3
    assert recs["q1"]["test_cases"][2] == "assert 3"  # the input record travels unchanged

    before = len(server.requests)
    assert run_solve(questions, out, client, n=3, progress=False).skipped == 2
    assert len(server.requests) == before


def test_solve_records_a_short_answer_list(tmp_path, server):
    server.responder = lambda body, attempt: Reply(["only one"])
    questions, out = tmp_path / "q.jsonl", tmp_path / "s.jsonl"
    write_records(questions, [{"id": "q1", "question": "Q", "test_cases": []}])
    summary = run_solve(questions, out, client_for(server), n=2, progress=False)
    assert summary.failed == 1 and read_records(out) == []
    assert read_records(failures_path(out))[0]["reason"] == "asked for 2 completions, got 1"


def test_parquet_in_and_out(tmp_path, server):
    seeds, out = tmp_path / "seeds.parquet", tmp_path / "synth.parquet"
    write_seeds(seeds, ["ok", "prose"])
    summary = run_synthesize(seeds, out, client_for(server), progress=False)
    assert summary.ok == 1 and [r["id"] for r in read_records(out)] == ["seed_ok"]
    assert (tmp_path / "synth.failures.jsonl").exists()


def test_bad_seed_stops_before_any_request(tmp_path, server):
    seeds = tmp_path / "seeds.jsonl"
    write_records(seeds, [{"id": "a", "program": "x = 1"}, {"id": "b", "source": "oss"}])
    with pytest.raises(RecordError, match=r"seeds.jsonl:2: field 'program'"):
        run_synthesize(seeds, tmp_path / "out.jsonl", client_for(server), progress=False)
    assert server.requests == []


def test_custom_prompt_file(tmp_path, server):
    prompt = tmp_path / "mine.txt"
    prompt.write_text("# my prompt\n# {program} is the seed\n=== user ===\n\nJSON like {\"question\": ...}"
                      " for:\n{program}\n\n")
    synthesize(tmp_path, client_for(server), scenarios=["ok"], prompt_path=prompt)
    [body] = server.requests
    assert body["messages"] == [{"role": "user", "content": "JSON like {\"question\": ...} for:\n"
                                 "def add(a, b):\n    return a + b  # SCENARIO ok"}]
    prompt.write_text("=== user ===\nno placeholder here\n")
    with pytest.raises(ValueError, match=r"mine.txt: template lacks placeholder\(s\) \{program\}"):
        synthesize(tmp_path, client_for(server), prompt_path=prompt)


def test_placeholder_values_are_inserted_literally(tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("=== user ===\n{question} / {tests}\n")
    msgs = load_chat_template(t).render(question="uses {tests} and {x}", tests="T")
    assert msgs == [{"role": "user", "content": "uses {tests} and {x} / T"}]


@pytest.mark.parametrize("reply, question, n_tests, repaired", [
    (GOOD, "Write add(a, b) returning a + b.", 20, False),
    ("Prose first {not json} then " + GOOD + " and after", "Write add(a, b) returning a + b.", 20, False),
    (GOOD[:GOOD.index(TESTS[3]) - 3], "Write add(a, b) returning a + b.", 3, True),  # after a comma
    (GOOD[:-2], "Write add(a, b) returning a + b.", 20, True),  # the closing bracket lost
    ("```json\n" + GOOD[:GOOD.index(TESTS[2]) + 4], "Write add(a, b) returning a + b.", 2, True),
    # Cut off after a complete nested object, or after an example object: the answer is still repaired.
    (GOOD[:-1] + ', "meta": {"k": "v"}, "note": "cut', "Write add(a, b) returning a + b.", 20, True),
    ('For example {"a": 1}. Answer: ' + GOOD[:GOOD.index(TESTS[3]) - 3], "Write add(a, b) returning a + b.", 3, True),
    ('{"a": {"b": 1}} then ' + GOOD, "Write add(a, b) returning a + b.", 20, False),
])
def test_parse_synth_reply(reply, question, n_tests, repaired):
    q, tests, dropped, was_repaired = parse_synth_reply(reply)
    assert (q, tests, dropped, was_repaired) == (question, TESTS[:n_tests], 0, repaired)


@pytest.mark.parametrize("reply, reason", [
    ('{"question": "Write add(a, b) ret', "no 'question' string in the reply (cut off before it ended)"),
    ('{"question": "Q", "tests": "assert 1"}', "no 'tests' list in the reply"),
    ('{"question": "Q", "tests": [}', "malformed JSON that is not a repairable truncation"),
    ('{"title": "T", "body": {"name": "N"}, "tags": ["a", "b',
     "no 'question' string in the reply (cut off before it ended)"),
    # A repetition loop: nesting deeper than json's recursion limit, cut off or closed.
    ('{"question": "Q", "tests": ' + "[" * 20000, "malformed JSON that is not a repairable truncation"),
    ('{"question": "Q", "tests": ' + "[" * 5000 + "]" * 5000 + "}",
     "malformed JSON that is not a repairable truncation"),
    ('{"question": "Q", "tests": ["assert f(1)", "assert f(1)", "assertEqual(f(1), 1)", '
     '"assert f(2)\\nimport os", null]}', None),
])
def test_parse_synth_reply_failures(reply, reason):
    if reason is None:  # repeats, non-asserts, extra statements, non-strings: dropped, one kept
        assert parse_synth_reply(reply)[1:3] == (["assert f(1)"], 4)
        return
    with pytest.raises(ReplyError) as info:
        parse_synth_reply(reply)
    assert str(info.value) == reason


def test_tests_too_deep_for_the_parser_are_dropped():
    chained = "assert " + " + ".join(["1"] * 5000) + " == 5000"  # RecursionError in ast construction
    negated = "assert " + "-" * 20000 + "1"  # MemoryError from the parser
    assert clean_tests([chained, negated, "assert f(1) == 1"]) == (["assert f(1) == 1"], 2)


def test_repairing_deep_nesting_stays_linear():
    start = time.process_time()
    assert repair_truncated_json('{"tests": ' + "[" * 200_000) is None  # a quadratic copy took minutes
    assert time.process_time() - start < 5.0


def test_map_chat_reports_errors_per_item():
    def fn(x):
        if x == 3:
            raise LLMError("boom")
        return x * 10
    done = {d.item: d for d in map_chat(range(6), fn, concurrency=2, progress=False)}
    assert {k: d.result for k, d in done.items() if d.error is None} == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
    assert str(done[3].error) == "boom"


def test_batching_backend_gets_chunks():
    class Batcher:
        calls: list = []

        def chat_batch(self, conversations, n, temperature, top_p, max_tokens):
            self.calls.append(len(conversations))
            return [[c[-1]["content"] + "!"] * n for c in conversations]

    backend = Batcher()
    out = list(run_chats(backend, list("abcde"), lambda s: [{"role": "user", "content": s}], n=2,
                         temperature=0.0, top_p=1.0, max_tokens=8, batch_size=2, progress=False))
    assert backend.calls == [2, 2, 1]
    assert [(d.item, d.result.texts) for d in out] == [(s, [s + "!"] * 2) for s in "abcde"]


@pytest.mark.vllm
def test_vllm_offline_backend(tmp_path, smollm2):
    """vLLM in this process with the real SmolLM2 (CPU build: explicit KV cache, eager); a local chat
    model of your own via ACECODER_TEST_VLLM_MODEL."""
    import os

    from tests.conftest import vllm_importable

    if (why := vllm_importable()) is not None:
        pytest.skip(why)
    from data_prep.llm_client import VLLMOfflineBackend

    model = os.environ.get("ACECODER_TEST_VLLM_MODEL") or smollm2
    backend = VLLMOfflineBackend(model, max_model_len=2048, dtype="float32", enforce_eager=True,
                                 kv_cache_memory_bytes=1 << 30)
    messages = load_chat_template(SOLVE).render(question="Return 1 from f().", tests="assert f() == 1")
    try:
        texts = backend.chat(messages, n=2, temperature=0.7, top_p=1.0, max_tokens=64)
    finally:
        backend.llm.llm_engine.engine_core.shutdown(timeout=60)
    assert len(texts) == 2 and all(t.startswith(messages[-1]["content"]) for t in texts)
