"""A CPU stand-in for TGI: the embedded model behind TGI's HTTP API (`/generate`, `/`, `/health`, `/info`).

TGI itself runs only from its container on a GPU. This server speaks the same JSON as TGI 3.x, so the `tgi`
backend (and any TGI client) can be exercised against a real HTTP server here: greedy decoding only, `details`
with per-token log-probabilities (eos as a special last token), stop strings (at most 4; a matched stop string
stays in `generated_text`), 422 "Input validation error: ..." (a `temperature` of 0 among them, as TGI refuses it:
greedy is `do_sample` false), 429 past `max_concurrent_requests`, `/health` 503 with `error_type` "healthcheck"
while the model cannot generate, and an `/info` without `model_dtype` (TGI 3 dropped it). Concurrent requests are
decoded together in one padded batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from padellm_ner.core.aggregate import FinishReason
from padellm_ner.lifecycle import AsyncComponent

from .engine.batching import MicroBatcher
from .engine.decoder import Generated, greedy_decode
from .engine.loading import EngineModel

log = logging.getLogger(__name__)
MAX_STOP_SEQUENCES = 4


class TgiValidationError(ValueError):
    pass


@dataclass
class _Job:
    prompt_ids: list[int]
    stops: tuple[str, ...]
    max_new_tokens: int


def _error(status: int, message: str, error_type: str) -> web.Response:
    return web.json_response({"error": message, "error_type": error_type}, status=status)


class TgiApiServer(AsyncComponent):
    def __init__(
        self,
        backend_or_model,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_requests: int = 128,
        max_input_tokens: int = 4096,
        max_total_tokens: int = 4608,
        batch_window_ms: float = 2.0,
    ):
        self.engine_model: EngineModel = getattr(backend_or_model, "engine_model", backend_or_model)
        self.host, self.port = host, port
        self.max_concurrent_requests = max_concurrent_requests
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.in_flight = 0
        self.generating = True  # what /health reports; a test turns it off as a failed shard would
        self._stop_ids_cache: dict[tuple[str, ...], frozenset[int]] = {}
        self._runner: web.AppRunner | None = None
        self._batcher: MicroBatcher[_Job, Generated] = MicroBatcher(
            self._decode,
            window_ms=batch_window_ms,
            name="tgi-api-engine",
            on_shutdown=lambda: RuntimeError("the server is shutting down"),
        )

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/generate", self.generate)
        app.router.add_post("/", self.generate)
        app.router.add_get("/health", self.health)
        app.router.add_get("/info", self.info)
        await self._batcher.start()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port when 0 was asked

    async def _stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        await self._batcher.stop()

    # --- endpoints ------------------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        if not self.generating:
            return _error(503, "unhealthy", "healthcheck")
        return web.Response(status=200)

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_id": self.engine_model.info.get("name"),
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "model_device_type": self.engine_model.device.type,
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_best_of": 1,
                "max_stop_sequences": MAX_STOP_SEQUENCES,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens,
                "validation_workers": 1,
                "max_client_batch_size": 1,
                "router": "padellm-ner-tgi-api",
                "version": "padellm-ner stand-in",
                "sha": None,
                "docker_label": None,
            }
        )

    def _parse(self, body) -> tuple[str, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str) or not body["inputs"]:
            raise TgiValidationError("`inputs` must be a non-empty string")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise TgiValidationError("`parameters` must be an object")
        temperature = parameters.get("temperature")
        if temperature is not None and (not isinstance(temperature, int | float) or temperature <= 0):
            raise TgiValidationError("`temperature` must be strictly positive")
        if (
            parameters.get("do_sample")
            or temperature not in (None, 1.0)
            or parameters.get("top_k")
            or parameters.get("top_p") not in (None, 1.0)
            or (parameters.get("best_of") or 1) > 1
        ):
            raise TgiValidationError("only greedy decoding is supported by this stand-in")
        stops = parameters.get("stop") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise TgiValidationError("`stop` must be a list of non-empty strings")
        if len(stops) > MAX_STOP_SEQUENCES:
            raise TgiValidationError(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stops)}")
        max_new = parameters.get("max_new_tokens", 100)
        if not isinstance(max_new, int) or max_new < 1:
            raise TgiValidationError("`max_new_tokens` must be strictly positive")
        return body["inputs"], {
            "stops": tuple(stops),
            "max_new_tokens": max_new,
            "details": bool(parameters.get("details")),
        }

    async def generate(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except Exception:
            return _error(422, "Failed to deserialize the JSON body", "validation")
        try:
            prompt, params = self._parse(body)
            ids = self.engine_model.encode(prompt, special=True)
            if len(ids) > self.max_input_tokens:
                raise TgiValidationError(
                    f"`inputs` must have less than {self.max_input_tokens} tokens. Given: {len(ids)}"
                )
            if len(ids) + params["max_new_tokens"] > self.max_total_tokens:
                raise TgiValidationError(
                    f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. "
                    f"Given: {len(ids)} `inputs` tokens and {params['max_new_tokens']} `max_new_tokens`"
                )
        except TgiValidationError as error:
            return _error(422, f"Input validation error: {error}", "validation")
        if self.in_flight >= self.max_concurrent_requests:
            return _error(429, "Model is overloaded", "overloaded")
        self.in_flight += 1
        try:
            generated = await self._batcher.submit(_Job(ids, params["stops"], params["max_new_tokens"]))
        except Exception as error:
            log.exception("generation failed")
            return _error(424, f"Request failed during generation: {error}", "generation")
        finally:
            self.in_flight -= 1
        return web.json_response(self._response(generated, params))

    def _response(self, generated, params) -> dict:
        tokens = [
            {"id": t, "text": self.engine_model.tokenizer.decode([t]), "logprob": lp, "special": False}
            for t, lp in zip(generated.token_ids, generated.logprobs)
        ]
        text_ids = list(generated.token_ids)
        finish = "length"
        if generated.finish is FinishReason.STOP:
            eos = generated.stop_token_id == self.engine_model.eos_id
            tokens.append(
                {
                    "id": generated.stop_token_id,
                    "text": self.engine_model.tokenizer.decode([generated.stop_token_id]),
                    "logprob": generated.stop_logprob,
                    "special": eos,
                }
            )
            finish = "eos_token" if eos else "stop_sequence"
            if not eos:
                text_ids.append(generated.stop_token_id)
        text = self.engine_model.decode(text_ids)
        for stop in params["stops"]:  # cut after the first matched stop string, which stays in the text
            index = text.find(stop)
            if index != -1:
                text, finish = text[: index + len(stop)], "stop_sequence"
        out: dict[str, object] = {"generated_text": text}
        if params["details"]:
            out["details"] = {
                "finish_reason": finish,
                "generated_tokens": len(tokens),
                "seed": None,
                "prefill": [],
                "tokens": tokens,
                "top_tokens": None,
                "best_of_sequences": None,
            }
        return out

    # --- batching -------------------------------------------------------------------------------------------

    def _stop_ids(self, stops: tuple[str, ...]) -> frozenset[int]:
        if stops not in self._stop_ids_cache:
            ids = {self.engine_model.eos_id}
            if any("\n" in s for s in stops):
                ids |= self.engine_model.newline_ids
            self._stop_ids_cache[stops] = frozenset(ids)
        return self._stop_ids_cache[stops]

    def _decode(self, jobs: list[_Job]) -> list[Generated | Exception]:
        """Runs on the engine thread: one padded greedy batch per (stop strings, max_new_tokens) group."""
        outcomes: dict[int, Generated | Exception] = {}
        groups: dict[tuple, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault((job.stops, job.max_new_tokens), []).append(index)
        for (stops, max_new), indices in groups.items():
            try:
                results = greedy_decode(
                    self.engine_model.model,
                    [jobs[i].prompt_ids for i in indices],
                    stop_ids=self._stop_ids(stops),
                    max_new_tokens=max_new,
                    pad_id=self.engine_model.pad_id,
                    should_stop=self._batcher.abandoned,
                )
            except Exception as error:  # fails this group's requests only
                outcomes.update(dict.fromkeys(indices, error))
                continue
            outcomes.update(zip(indices, results))
        return [outcomes[i] for i in range(len(jobs))]
