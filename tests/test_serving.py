"""The serving stack against real gRPC servers on loopback with the real model."""

import asyncio
import dataclasses

import grpc
import pytest
from serving import SlowBackend, document, entities, ner_client, ner_service, recognize, worker

from padellm.v1 import ner_pb2, worker_pb2, worker_pb2_grpc
from padellm_ner.grpc_common import channel
from workers.backends.embedded import EmbeddedBackend

TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "BRUSSELS 1996-08-22",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C match .",
    "Germany 's representative to the European Union 's veterinary committee Werner Zwingmann said on Wednesday .",
]


@pytest.fixture
def backend(serving_engine_model):
    return lambda: EmbeddedBackend(serving_engine_model)


async def test_recognize_end_to_end(backend):
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:
        record = await recognize(stub, "doc-1", TEXTS[0], deadline=120)
    assert record.id == "doc-1" and record.record_version == "padellm-ner.entity-record/v1"
    assert [c.label for c in record.counts] == ["ORG", "MISC", "PER", "LOC"]
    assert record.schema == "conll03" and record.timings.wall_ms > 0
    for entity in record.entities:
        if entity.HasField("start"):
            assert TEXTS[0][entity.start : entity.end] == entity.text
        assert 0 < entity.probability <= 1


async def test_multi_and_batch_modes_return_identical_entities(backend):
    async with worker(backend()) as (target, _):
        results = {}
        for mode in ("multi", "batch"):
            async with ner_service([target], mode) as (service, _), ner_client(service) as stub:
                results[mode] = [entities(await recognize(stub, f"d{i}", t, deadline=120)) for i, t in enumerate(TEXTS)]
    assert results["multi"] == results["batch"]


async def test_batch_and_stream_calls(backend):
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:
        single = [entities(await recognize(stub, f"d{i}", t, deadline=120)) for i, t in enumerate(TEXTS)]
        batch = await stub.RecognizeBatch(
            ner_pb2.RecognizeBatchRequest(documents=[document(f"d{i}", t) for i, t in enumerate(TEXTS)]), timeout=120
        )
        assert [r.id for r in batch.records] == [f"d{i}" for i in range(len(TEXTS))]
        assert [entities(r) for r in batch.records] == single

        async def requests():
            for i, t in enumerate(TEXTS):
                yield ner_pb2.RecognizeStreamRequest(document=document(f"s{i}", t))

        responses = [r async for r in stub.RecognizeStream(requests(), timeout=120)]
        assert [(r.index, r.id) for r in responses] == [(i, f"s{i}") for i in range(len(TEXTS))]
        streamed = [r.record for r in responses]
        assert [r.id for r in streamed] == [f"s{i}" for i in range(len(TEXTS))]
        assert [entities(r) for r in streamed] == single


async def test_a_bad_request_in_a_stream_fails_alone(backend):
    """The request in the middle is invalid: it gets an error response naming its field; the others are read."""
    texts = [TEXTS[0], "", TEXTS[1]]
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:

        async def requests():
            for i, t in enumerate(texts):
                yield ner_pb2.RecognizeStreamRequest(document=document(f"s{i}", t))

        responses = [r async for r in stub.RecognizeStream(requests(), timeout=120)]
    assert [(r.index, r.id, r.HasField("record"), r.HasField("error")) for r in responses] == [
        (0, "s0", True, False),
        (1, "s1", False, True),
        (2, "s2", True, False),
    ]
    error = responses[1].error
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error.field == "document.text"
    assert "text is empty" in error.message
    assert responses[2].record.id == "s2" and responses[2].record.entities


async def test_over_capacity_calls_are_refused_at_once_with_a_retry_delay(serving_engine_model):
    """100 concurrent calls on a service that reads 4 documents at once: each call succeeds, or is refused with
    RESOURCE_EXHAUSTED and a google.rpc.RetryInfo within a second."""
    import time

    from google.rpc import error_details_pb2, status_pb2

    slow = SlowBackend(EmbeddedBackend(serving_engine_model), delay_s=0.5)
    async with worker(slow) as (target, _), ner_service([target], max_documents=4) as (service, _):
        async with ner_client(service) as stub:

            async def one(n: int):
                started = time.perf_counter()
                try:
                    await recognize(stub, f"c{n}", TEXTS[1], deadline=120)
                    return "OK", time.perf_counter() - started, None
                except grpc.aio.AioRpcError as error:
                    return error.code().name, time.perf_counter() - started, error

            outcomes = await asyncio.gather(*(one(n) for n in range(100)))
    codes = {code for code, _, _ in outcomes}
    assert codes == {"OK", "RESOURCE_EXHAUSTED"}
    refused = [(seconds, error) for code, seconds, error in outcomes if code == "RESOURCE_EXHAUSTED"]
    assert max(seconds for seconds, _ in refused) < 1.0
    trailer = dict(refused[0][1].trailing_metadata())["grpc-status-details-bin"]
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status_pb2.Status.FromString(trailer).details)
    assert retry.retry_delay.seconds == 1


async def test_the_service_is_not_serving_while_no_worker_is(backend):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from padellm_ner.grpc_common import GrpcServer
    from service.health import worker_health_watch
    from service.orchestrator import Orchestrator
    from service.server import SERVICE_NAME, NerService, add_to_server
    from service.worker_pool import WorkerPool

    async def status(address: str) -> int:
        async with channel(address) as ch:
            check = health_pb2_grpc.HealthStub(ch).Check
            return (await check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)).status

    async with worker(backend()) as (target, worker_server), WorkerPool([target]) as pool:
        service = NerService(Orchestrator(pool))
        async with GrpcServer(add_to_server(service), [SERVICE_NAME], "127.0.0.1", 0) as server:
            address = f"127.0.0.1:{server.port}"
            async with worker_health_watch(pool, server.set_serving, interval_s=0.2, timeout_s=1.0):
                assert await status(address) == health_pb2.HealthCheckResponse.SERVING
                await worker_server.stop(0)  # the only worker goes away
                await asyncio.sleep(1.5)
                assert await status(address) == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_many_concurrent_clients(backend):
    async with worker(backend()) as (a, _), worker(backend()) as (b, _), ner_service([a, b]) as (service, _):
        async with ner_client(service) as stub:
            expected = {t: entities(await recognize(stub, "warm", t, deadline=120)) for t in TEXTS}

        async def one_client(n: int):
            async with ner_client(service) as own:
                text = TEXTS[n % len(TEXTS)]
                return text, entities(await recognize(own, f"c{n}", text, deadline=300))

        results = await asyncio.gather(*(one_client(n) for n in range(24)))
    assert all(got == expected[text] for text, got in results)


async def test_one_target_naming_many_workers_is_balanced_over_them(backend):
    """A target that resolves to many workers (here ipv4:A,B; in a cluster dns:/// of the workers' headless
    Service): the service's one channel spreads calls over all of them round-robin, so adding worker pods adds
    capacity without re-configuring the service."""
    calls: dict[str, int] = {"a": 0, "b": 0}

    def counter(name):
        return lambda method, code, error: calls.__setitem__(name, calls[name] + 1)

    async with worker(backend(), observe=counter("a")) as (a, _), worker(backend(), observe=counter("b")) as (b, _):
        async with ner_service([f"ipv4:{a},{b}"]) as (service, _), ner_client(service) as stub:
            for i, text in enumerate(TEXTS):
                assert (await recognize(stub, f"d{i}", text, deadline=120)).id == f"d{i}"
    assert calls["a"] > 0 and calls["b"] > 0, calls
    assert min(calls.values()) / max(calls.values()) > 0.5, calls


async def test_worker_down_mid_run_is_retried_on_another(backend):
    async with worker(backend()) as (a, server_a), worker(backend()) as (b, _):
        async with ner_service([a, b], affinity=False) as (service, orchestrator), ner_client(service) as stub:
            before = [entities(await recognize(stub, f"d{i}", t, deadline=120)) for i, t in enumerate(TEXTS[:2])]
            await server_a.stop(0)  # one worker goes away
            after = [entities(await recognize(stub, f"d{i}", t, deadline=120)) for i, t in enumerate(TEXTS[:2])]
            assert after == before
            assert orchestrator.pool.stats.retries >= 1 and orchestrator.pool.stats.failures.get("UNAVAILABLE")


async def test_all_workers_down_gives_a_clear_error(backend):
    async with worker(backend()) as (a, server_a):
        async with ner_service([a], attempts=2) as (service, _), ner_client(service) as stub:
            await server_a.stop(0)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await recognize(stub, "d", TEXTS[0], deadline=60)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model worker call failed" in error.value.details()


async def test_deadlines(serving_engine_model):
    slow = SlowBackend(EmbeddedBackend(serving_engine_model), delay_s=2.0)
    async with worker(slow) as (target, _), ner_service([target], deadline_s=0.2) as (service, _):
        async with ner_client(service) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await recognize(stub, "d", TEXTS[0], deadline=30)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(grpc.aio.AioRpcError) as error:  # the caller's own deadline
                await recognize(stub, "d", TEXTS[0], deadline=0.05)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the google.rpc.BadRequest detail of an error's status."""
    from google.rpc import error_details_pb2, status_pb2

    trailer = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    fields = []
    for detail in status_pb2.Status.FromString(trailer).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_the_callers_deadline_reaches_the_worker_calls(serving_engine_model):
    """With 1 s left to its caller, a document's worker calls end within it, not at their own 30 s deadline
    (each call of a slow worker takes 3 s)."""
    import time

    from padellm_ner.core import get_schema
    from service.orchestrator import caller_deadline

    slow = SlowBackend(EmbeddedBackend(serving_engine_model), delay_s=3.0)
    async with worker(slow) as (target, _), ner_service([target], deadline_s=30.0) as (_, orchestrator):
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as error, caller_deadline(1.0):
            await orchestrator.recognize("d", TEXTS[0], get_schema("conll03"))
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - started < 2.0
        # without a caller's deadline the same kind of document waits for the slow worker and is read
        assert (await orchestrator.recognize("d", TEXTS[1], get_schema("conll03"))).id == "d"


async def test_a_document_ends_with_its_budget(serving_engine_model):
    """A budget of 1 s for a short document on a worker that takes 3 s per call: DEADLINE_EXCEEDED after about
    1 s, not after the calls' own 30 s."""
    import time
    from dataclasses import replace

    from padellm_ner.core import get_schema

    slow = SlowBackend(EmbeddedBackend(serving_engine_model), delay_s=3.0)
    async with worker(slow) as (target, _), ner_service([target], deadline_s=30.0) as (_, orchestrator):
        orchestrator.config = replace(orchestrator.config, budget_per_window_s=0.1, budget_min_s=1.0)
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await orchestrator.recognize("d", TEXTS[0], get_schema("conll03"))
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "bad, field, message",
    [
        (dict(id="d", text=""), "text", "text is empty"),
        (dict(id="d", text="x" * 100_001), "text", "limit is 100000"),
        (dict(id="d", text="EU", schema="nope"), "schema", "unknown label schema"),
        (dict(id="d", text="EU", labels=["GPE"]), "labels", "not in schema conll03"),
        (dict(id="", text="EU"), "id", "document id"),
        (dict(id="bad id with spaces", text="EU"), "id", "document id"),
    ],
)
async def test_invalid_requests_get_invalid_argument(backend, bad, field, message):
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Recognize(ner_pb2.RecognizeRequest(document=ner_pb2.Document(**bad)), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
        assert bad_request_fields(error.value) == [f"document.{field}"]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.RecognizeBatch(
                ner_pb2.RecognizeBatchRequest(documents=[document("ok", TEXTS[0]), ner_pb2.Document(**bad)]),
                timeout=30,
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "documents[1]" in error.value.details()
        assert bad_request_fields(error.value) == [f"documents[1].{field}"]


async def test_worker_validates_its_own_calls(backend):
    async with worker(backend()) as (target, _):
        async with channel(target) as ch:
            stub = worker_pb2_grpc.ModelWorkerServiceStub(ch)
            for call in (
                stub.Mention(
                    worker_pb2.MentionRequest(document_id="d", text="EU", schema="conll03", label="ORG", count=2, k=3),
                    timeout=30,
                ),
                stub.Count(
                    worker_pb2.CountRequest(document_id="d", text="EU", schema="conll03", label="XYZ"), timeout=30
                ),
                stub.Count(
                    worker_pb2.CountRequest(document_id="d", text=" ", schema="conll03", label="ORG"), timeout=30
                ),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await call
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            info = await stub.Info(worker_pb2.InfoRequest(), timeout=30)
            assert info.backend == worker_pb2.BACKEND_EMBEDDED and "conll03" in info.schemas


async def test_concurrent_calls_of_one_document_share_a_batch(serving_engine_model):
    backend = EmbeddedBackend(serving_engine_model, batch_window_ms=20)
    async with backend:
        results = await asyncio.gather(
            *(backend.count("d", TEXTS[0], "conll03", label) for label in ("ORG", "MISC", "PER", "LOC"))
        )
    assert backend.batches == 1 and [r.result.label for r in results] == ["ORG", "MISC", "PER", "LOC"]


async def test_health_and_reflection(backend):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with worker(backend()) as (target, _), ner_service([target]) as (service, _):
        for address, name in ((target, "padellm.v1.ModelWorkerService"), (service, "padellm.v1.NerService")):
            async with channel(address) as ch:
                health = health_pb2_grpc.HealthStub(ch)
                for service_name in ("", name):
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=10)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
                reflection = reflection_pb2_grpc.ServerReflectionStub(ch)

                async def ask():
                    yield reflection_pb2.ServerReflectionRequest(list_services="")

                replies = [r async for r in reflection.ServerReflectionInfo(ask(), timeout=10)]
                names = {s.name for s in replies[0].list_services_response.service}
                assert name in names and "grpc.health.v1.Health" in names


ARTICLE = (
    "SOCCER - JAPAN GET LUCKY WIN , CHINA IN SURPRISE DEFEAT .\n\nAL-AIN , United Arab Emirates 1996-12-06\n\n"
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C "
    "championship match on Friday .  But China saw their luck desert them in the second match of the group ,"
    " crashing to a surprise 2-0 defeat to newcomers Uzbekistan .\n\nChina controlled most of the match and "
    "saw several chances missed until the 78th minute when Uzbek striker Igor Shkvyrin took advantage of a "
    "misdirected defensive header to lob the ball over the advancing Chinese keeper and into an empty net ."
)


async def test_a_document_is_read_as_windows_in_both_modes_as_the_engine_reads_it(backend, serving_engine_model):
    """A multi-window document through the service: every call carries one window, the windows of both modes and
    of the in-process engine agree, and every offset is an offset into the document as sent."""
    from padellm_ner.core import get_schema
    from workers.engine.padellm import PadellmEngine

    engine = PadellmEngine(serving_engine_model)
    expected = engine.recognize(ARTICLE, get_schema("conll03")).prediction
    assert expected.windows >= 3
    want = [(m.label, m.text, m.start, m.end) for m in expected.mentions]
    async with worker(backend()) as (target, _):
        for mode in ("multi", "batch"):
            async with ner_service([target], mode) as (service, _), ner_client(service) as stub:
                record = await recognize(stub, "article", ARTICLE, deadline=120)
            assert record.windows == expected.windows
            assert [e[:4] for e in entities(record)] == want, mode
            assert {e.window for e in record.entities} <= set(range(record.windows))
            for entity in record.entities:
                if entity.HasField("start"):
                    assert ARTICLE[entity.start : entity.end] == entity.text
            assert [c.count for c in record.counts] == [c.count for c in expected.counts]


async def test_a_schema_the_model_was_not_trained_for_is_refused(backend, serving_engine_model):
    served = serving_engine_model.info.get("schema")
    if not served:
        pytest.skip("the bare base model serves every schema")
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await recognize(stub, "d", "张三毕业于北京大学", schema="resume", deadline=60)
        # no worker serves it: the service says so at once, naming the schema and what is served
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "schema resume" in error.value.details() and served in error.value.details()
        async with channel(target) as ch:  # the worker itself says what it serves, and refuses the rest
            stub = worker_pb2_grpc.ModelWorkerServiceStub(ch)
            assert list((await stub.Info(worker_pb2.InfoRequest())).schemas) == [served]
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Count(worker_pb2.CountRequest(document_id="d", text="张三", schema="resume", label="NAME"))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_worker_call_carries_one_window(backend):
    async with worker(backend()) as (target, _), channel(target) as ch:
        stub = worker_pb2_grpc.ModelWorkerServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Count(worker_pb2.CountRequest(document_id="d", text=ARTICLE * 10, schema="conll03", label="PER"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "one window" in error.value.details()


async def test_a_document_of_100000_characters(backend):
    """The longest document accepted: a few sentences far apart in 100,000 characters of whitespace and line
    breaks. Every entity's offsets point into the document as sent."""
    pieces = ["Peter Blackburn", "BRUSSELS 1996-08-22", TEXTS[0], TEXTS[3]]
    gap = (100_000 - sum(len(p) for p in pieces)) // (len(pieces) - 1)
    text = ("\n" + " " * (gap - 1)).join(pieces)
    text += " " * (100_000 - len(text))
    assert len(text) == 100_000
    async with worker(backend()) as (target, _), ner_service([target]) as (service, _), ner_client(service) as stub:
        record = await recognize(stub, "long", text, deadline=300)
    assert record.windows == len(pieces) and record.entities
    for entity in record.entities:
        if entity.HasField("start"):
            assert text[entity.start : entity.end] == entity.text
    assert {"Peter Blackburn", "Japan", "Syria"} <= {e.text for e in record.entities}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_documents_go_to_the_workers_of_their_schema_and_the_service_lists_them(serving_engine_model):
    """Two worker groups, each serving one model: a Chinese and an English document sent to one service come back
    from their own schema's model; ListModels lists both; a schema nobody serves is FAILED_PRECONDITION, and
    UNAVAILABLE while a worker that might serve it has not answered."""
    served = serving_engine_model.info.get("schema")
    if not served:
        pytest.skip("the bare base model serves every schema")
    # a second model for the Chinese schema: the same network under another identity (what is tested here is
    # where calls go, not what the network reads)
    chinese = dataclasses.replace(
        serving_engine_model,
        info={**serving_engine_model.info, "schema": "resume", "name": "resume-probe", "version": "7"},
    )
    async with (
        worker(EmbeddedBackend(serving_engine_model)) as (english_target, _),
        worker(EmbeddedBackend(chinese)) as (chinese_target, _),
        ner_service([english_target, chinese_target]) as (service, orchestrator),
        ner_client(service) as stub,
    ):
        english = await recognize(stub, "en", TEXTS[0], deadline=60)
        assert (english.schema, english.model) == (served, serving_engine_model.info["name"])
        assert entities(english), "the English document's entities"
        zh = await recognize(stub, "zh", "吴重阳，中国国籍，大学本科，教授级高工。", schema="resume", deadline=60)
        assert (zh.schema, zh.model, zh.model_version) == ("resume", "resume-probe", "7")
        calls = {e.target: e.calls for e in orchestrator.pool.endpoints}
        # the Chinese document's 8 counts (and any mentions) reached the Chinese worker only
        assert calls[chinese_target] >= 8
        assert calls[english_target] == len(english.counts) + sum(c.count for c in english.counts)
        listed = await stub.ListModels(ner_pb2.ListModelsRequest(), timeout=10)
        by_schema = {m.schema: m for m in listed.models}
        assert set(by_schema) == {served, "resume"} and listed.unreachable_workers == 0
        assert (by_schema["resume"].language, list(by_schema["resume"].labels)[:2]) == ("zh", ["NAME", "CONT"])
        assert by_schema[served].language == "en" and by_schema[served].backend == "embedded"
        assert by_schema[served].workers == 1 and by_schema["resume"].model_version == "7"
        assert listed.limits.max_text_chars == 100_000 and listed.default_schema == "conll03"
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await recognize(stub, "g", "IL-2 gene expression requires NF-kappa B .", schema="genia", deadline=60)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "schema genia" in error.value.details() and "resume (resume-probe 7)" in error.value.details()
    # a worker endpoint that never answered may yet serve a schema: UNAVAILABLE (retry), not FAILED_PRECONDITION
    async with (
        worker(EmbeddedBackend(serving_engine_model)) as (english_target, _),
        ner_service([english_target, f"127.0.0.1:{_free_port()}"], attempts=1) as (service, _),
        ner_client(service) as stub,
    ):
        assert entities(await recognize(stub, "en", TEXTS[0], deadline=60))
        listed = await stub.ListModels(ner_pb2.ListModelsRequest(), timeout=10)
        assert [m.schema for m in listed.models] == [served] and listed.unreachable_workers == 1
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await recognize(stub, "g", "IL-2 gene expression requires NF-kappa B .", schema="genia", deadline=60)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "has answered yet" in error.value.details()
