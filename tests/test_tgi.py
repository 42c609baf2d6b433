"""The `tgi` backend against a real HTTP server that speaks TGI's API (the embedded model behind it)."""

import asyncio

import aiohttp
import grpc
import pytest
from serving import FaultProxy, entities, ner_client, ner_service, recognize, worker

from padellm_ner.errors import ErrorCode, PadellmError
from workers.backends.embedded import EmbeddedBackend
from workers.backends.tgi import TgiBackend
from workers.tgi_api import TgiApiServer

TEXT = "EU rejects German call to boycott British lamb ."


async def test_tgi_api_shapes(serving_engine_model):
    async with TgiApiServer(serving_engine_model) as api, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{api.port}"
        async with http.get(f"{base}/health") as r:
            assert r.status == 200
        async with http.get(f"{base}/info") as r:
            info = await r.json()
            assert info["max_concurrent_requests"] == 128 and "model_dtype" not in info  # TGI 3 dropped it
        body = {
            "inputs": "text:\nEU rejects\nentity type:\nORG\n\n<num>",
            "parameters": {"details": True, "max_new_tokens": 10, "stop": ["\n"]},
        }
        async with http.post(f"{base}/generate", json=body) as r:
            out = await r.json()
        assert set(out) == {"generated_text", "details"}
        details = out["details"]
        assert details["finish_reason"] in ("eos_token", "stop_sequence", "length")
        assert details["generated_tokens"] == len(details["tokens"])
        assert all({"id", "text", "logprob", "special"} <= set(t) for t in details["tokens"])
        for bad, status in (
            ({"inputs": ""}, 422),
            ({"inputs": "x", "parameters": {"stop": ["a"] * 5}}, 422),
            ({"inputs": "x", "parameters": {"do_sample": True}}, 422),
            ({"inputs": "x", "parameters": {"temperature": 0}}, 422),  # TGI: greedy is do_sample false
        ):
            async with http.post(f"{base}/generate", json=bad) as r:
                error = await r.json()
                assert r.status == status and error["error_type"] == "validation"
                assert error["error"].startswith("Input validation error: ")
        api.generating = False  # as a TGI whose shard cannot generate
        async with http.get(f"{base}/health") as r:
            assert r.status == 503 and (await r.json())["error_type"] == "healthcheck"


async def test_tgi_backend_equals_the_embedded_backend(serving_engine_model):
    embedded = EmbeddedBackend(serving_engine_model)
    async with TgiApiServer(serving_engine_model) as api, embedded:
        tgi = TgiBackend(f"http://127.0.0.1:{api.port}")
        await tgi.start()
        try:
            for label in ("ORG", "MISC", "PER", "LOC"):
                a = (await tgi.count("d", TEXT, "conll03", label)).result
                b = (await embedded.count("d", TEXT, "conll03", label)).result
                assert a.raw.rstrip("\n") == b.raw and a.logprob == pytest.approx(b.logprob, abs=1e-3)
            a = (await tgi.mention("d", TEXT, "conll03", "MISC", 2, 1)).result
            b = (await embedded.mention("d", TEXT, "conll03", "MISC", 2, 1)).result
            assert a.raw.rstrip("\n") == b.raw and a.logprob == pytest.approx(b.logprob, abs=1e-3)
        finally:
            await tgi.stop()


async def test_service_over_tgi_workers_matches_embedded_workers(serving_engine_model):
    texts = [TEXT, "Peter Blackburn", "Japan beat Syria in the Asian Cup ."]
    async with TgiApiServer(serving_engine_model) as api:
        async with (
            worker(TgiBackend(f"http://127.0.0.1:{api.port}")) as (tgi_target, _),
            worker(EmbeddedBackend(serving_engine_model)) as (embedded_target, _),
        ):
            results = {}
            for name, target in (("tgi", tgi_target), ("embedded", embedded_target)):
                async with ner_service([target]) as (service, _), ner_client(service) as stub:
                    results[name] = [
                        [e[:4] for e in entities(await recognize(stub, f"d{i}", t, deadline=120))]
                        for i, t in enumerate(texts)
                    ]
    assert results["tgi"] == results["embedded"]


async def test_tgi_errors_map_to_grpc_statuses(serving_engine_model):
    # 429 past max_concurrent_requests, retried until the call's time is up -> RESOURCE_EXHAUSTED
    async with TgiApiServer(serving_engine_model, max_concurrent_requests=0) as api:
        tgi = TgiBackend(f"http://127.0.0.1:{api.port}", timeout_s=1.0)
        await tgi.start()
        with pytest.raises(PadellmError) as error:
            await tgi.count("d", TEXT, "conll03", "ORG")
        assert error.value.code is ErrorCode.RESOURCE_EXHAUSTED
        await tgi.stop()
    # 422 (too long for max_input_tokens) -> INVALID_ARGUMENT
    async with TgiApiServer(serving_engine_model, max_input_tokens=5) as api:
        tgi = TgiBackend(f"http://127.0.0.1:{api.port}")
        await tgi.start()
        with pytest.raises(PadellmError) as error:
            await tgi.count("d", TEXT, "conll03", "ORG")
        assert error.value.code is ErrorCode.INVALID_ARGUMENT
        await tgi.stop()
    # nothing listening -> UNAVAILABLE; a server that never answers -> DEADLINE_EXCEEDED
    tgi = TgiBackend("http://127.0.0.1:9", schemas=["conll03"])
    await tgi.start()
    with pytest.raises(PadellmError) as error:
        await tgi.count("d", TEXT, "conll03", "ORG")
    assert error.value.code is ErrorCode.UNAVAILABLE
    await tgi.stop()

    async def silent(reader, writer):
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tgi = TgiBackend(f"http://127.0.0.1:{port}", timeout_s=0.3, schemas=["conll03"])
    await tgi.start()
    with pytest.raises(PadellmError) as error:
        await tgi.count("d", TEXT, "conll03", "ORG")
    assert error.value.code is ErrorCode.DEADLINE_EXCEEDED
    await tgi.stop()
    server.close()


async def test_first_count_of_a_document_goes_alone(serving_engine_model):
    """TGI caches a prefix only once its request finished: the rest of the document waits for the first."""
    async with TgiApiServer(serving_engine_model) as api:
        seen = []
        tgi = TgiBackend(f"http://127.0.0.1:{api.port}")
        original = tgi._generate

        async def spy(prompt, max_new):
            seen.append(("start", prompt.rsplit("\n\n", 1)[0][-4:]))
            out = await original(prompt, max_new)
            seen.append(("end", prompt.rsplit("\n\n", 1)[0][-4:]))
            return out

        tgi._generate = spy
        await tgi.start()
        await asyncio.gather(*(tgi.count("doc", TEXT, "conll03", label) for label in ("ORG", "MISC", "PER", "LOC")))
        await tgi.stop()
    assert seen[0][0] == "start" and seen[1][0] == "end"  # the first request finished before any other began


async def test_tgi_schemas_come_from_its_model_and_others_are_refused(serving_engine_model):
    """The worker serves the schema TGI's model id names (`padellm-conll03`), refuses a request for another one,
    and will not start when told a schema the model id contradicts."""
    served = serving_engine_model.info.get("schema")
    if not served:
        pytest.skip("the bare base model names no schema")
    async with TgiApiServer(serving_engine_model) as api:
        with pytest.raises(ValueError, match="not resume"):
            await TgiBackend(f"http://127.0.0.1:{api.port}", schemas=["resume"]).start()
        async with (
            worker(TgiBackend(f"http://127.0.0.1:{api.port}")) as (target, _),
            ner_service([target]) as (service, _),
            ner_client(service) as stub,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await recognize(stub, "d", "张三毕业于北京大学", schema="resume", deadline=60)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "no worker serves schema resume" in error.value.details()


async def test_a_mention_cut_at_its_token_limit_is_never_an_entity(serving_engine_model):
    """TGI's finish_reason "length": the mention is incomplete. The record counts it as truncated and does not
    return it; with room for the whole mention the same document returns it."""
    text = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria ."
    records = {}
    async with TgiApiServer(serving_engine_model) as api:
        for limit in (1, 48):
            async with (
                worker(TgiBackend(f"http://127.0.0.1:{api.port}", max_mention_tokens=limit)) as (target, _),
                ner_service([target]) as (service, _),
                ner_client(service) as stub,
            ):
                records[limit] = await recognize(stub, "d", text, deadline=120)
    whole = {e.text for e in records[48].entities}
    assert "Asian Cup" in whole, "the model finds the two-token mention when it may finish it"
    assert records[48].truncated == 0
    cut = records[1]
    assert cut.truncated > 0 and "Asian Cup" not in {e.text for e in cut.entities}
    assert all(e.text in whole for e in cut.entities), "only mentions that ended on their own"


async def test_the_tgi_backend_is_healthy_while_tgi_answers(serving_engine_model):
    async with TgiApiServer(serving_engine_model) as api:
        tgi = TgiBackend(f"http://127.0.0.1:{api.port}")
        await tgi.start()
        assert await tgi.healthy()
    assert not await tgi.healthy()  # the server is gone
    await tgi.stop()


async def test_overload_and_shard_failures_are_retried_and_concurrency_follows_tgi(serving_engine_model):
    """The backend takes TGI's max_concurrent_requests as its own bound (so it queues what TGI would refuse with
    429), and retries 429, 424 (a shard failed generating) and 503 inside the call's deadline."""
    async with TgiApiServer(serving_engine_model, max_concurrent_requests=2) as api:
        async with FaultProxy(f"http://127.0.0.1:{api.port}", path="/generate", style="tgi") as proxy:
            tgi = TgiBackend(proxy.url, prime_documents=False)
            await tgi.start()
            try:
                assert tgi.max_concurrency == 2
                labels = ("ORG", "MISC", "PER", "LOC") * 2
                results = await asyncio.gather(
                    *(tgi.count(f"d{i}", TEXT, "conll03", label) for i, label in enumerate(labels))
                )
                assert len(results) == 8  # eight calls, never more than two at TGI: no 429
                expected = (await tgi.count("d", TEXT, "conll03", "ORG")).result.raw
                proxy.fail = [429, 424, 503]
                assert (await tgi.count("d", TEXT, "conll03", "ORG")).result.raw == expected and not proxy.fail
                proxy.fail = [422]
                with pytest.raises(PadellmError) as error:
                    await tgi.count("d", TEXT, "conll03", "ORG")
                assert error.value.code is ErrorCode.INVALID_ARGUMENT
            finally:
                await tgi.stop()
