"""The gateway's request rules, declared once: these models are the request schemas of the
OpenAPI document and the check each request passes on the hot path (:meth:`GatewayRequest.parse`).

Exactly as strict as vLLM (issue 13, defect 5): a model declares only the fields the gateway
reads, with the types of vLLM's own protocol models (vLLM validates them with pydantic in lax
mode too, so ``max_tokens: 2.0`` and ``"3"`` are integers here as there), plus the gateway's
documented caps (``GATEWAY_MAX_*``). Every other field goes to vLLM as sent and vLLM checks it,
the ranges of its sampling parameters included (they differ between vLLM versions); its 400
comes back with the field it names."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, with_config
from typing_extensions import Required, TypedDict  # pydantic reads only these TypedDicts on Python 3.11

from .core.config import Settings
from .core.errors import GatewayError, invalid_request

OutputTokens = Annotated[
    int | None, Field(description="At most GATEWAY_MAX_TOKENS_CAP (400 beyond); vLLM checks the rest.")
]
TokenId = Annotated[int, Field(ge=0)]


# Messages are TypedDicts, not models: validated as dicts, twice as fast for long conversations.
@with_config(ConfigDict(extra="allow"))
class ContentPart(TypedDict, total=False):
    """One part of a message's content (text, image, ...); its ``text`` counts toward the cap."""

    text: str | None


@with_config(ConfigDict(extra="allow"))
class ChatMessage(TypedDict, total=False):
    role: Required[Annotated[str, Field(description="Any role string: vLLM hands custom roles to the chat template.")]]
    content: Annotated[str | list[ContentPart] | None, Field(description="At most GATEWAY_MAX_MESSAGE_CHARS characters of text.")]


Messages = Annotated[list[ChatMessage], Field(min_length=1, description="At most GATEWAY_MAX_MESSAGES.")]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


def _too_long(param: str, what: str, limit: int) -> GatewayError:
    return GatewayError(400, f"invalid '{param}': longer than the limit of {limit} {what}", param=param, code="message_too_long")


class GatewayRequest(BaseModel):
    """What every JSON route reads: an object, and the model name."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="A model this gateway serves (else 404); absent or empty: the served model.")

    capped: ClassVar[tuple[str, ...]] = ()  # output-token fields, at most GATEWAY_MAX_TOKENS_CAP

    @classmethod
    def parse(cls, body: Any, s: Settings, models: Collection[str] | None) -> Self:
        """The request as the gateway reads it, or a 400 that names the field (404 for a model
        this gateway does not serve)."""
        try:
            req = cls.__pydantic_validator__.validate_python(body)
        except ValidationError as e:
            raise invalid_request(e.errors(include_url=False)) from None
        req.check(s, models)
        return req

    def check(self, s: Settings, models: Collection[str] | None) -> None:
        """The gateway's own limits, on top of the types."""
        model = self.model
        if model and models and model not in models:
            raise GatewayError(
                404,
                f"The model '{model}' does not exist; this gateway serves: {', '.join(sorted(models))}",
                param="model",
                code="model_not_found",
            )
        for name in self.capped:
            v = getattr(self, name)
            if v is not None and v > s.max_tokens_cap:
                raise GatewayError(
                    400, f"invalid '{name}': {v} exceeds this gateway's limit of {s.max_tokens_cap}", param=name, code="max_tokens_exceeded"
                )


class PassThroughRequest(GatewayRequest):
    """Embeddings, score, rerank, tokenize, detokenize: passed to vLLM as sent (vLLM checks them;
    the gateway checks the model name). They answer where the served model supports them
    (pooling models for embeddings, score and rerank)."""


class ChatCompletionRequest(GatewayRequest):
    """OpenAI chat completions; the other fields of the API pass to vLLM, which checks them."""

    messages: Messages
    max_tokens: OutputTokens = None
    max_completion_tokens: OutputTokens = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    capped = ("max_tokens", "max_completion_tokens")

    def check(self, s: Settings, models: Collection[str] | None) -> None:
        super().check(s, models)
        if len(self.messages) > s.max_messages:
            raise GatewayError(
                400, f"invalid 'messages': {len(self.messages)} messages exceed the limit of {s.max_messages}", param="messages", code="invalid_value"
            )
        limit = s.max_message_chars
        for i, m in enumerate(self.messages):
            c = m.get("content")
            if c and (len(c) if type(c) is str else sum(len(p.get("text") or "") for p in c)) > limit:  # type: ignore[union-attr]
                raise _too_long(f"messages[{i}].content", "characters", limit)


class CompletionRequest(GatewayRequest):
    """OpenAI completions; the other fields of the API pass to vLLM, which checks them."""

    prompt: list[TokenId] | list[list[TokenId]] | str | list[str] | None = Field(
        None, description="Text, texts or token ids; at most GATEWAY_MAX_MESSAGE_CHARS characters (or token ids) in all."
    )
    max_tokens: OutputTokens = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    capped = ("max_tokens",)

    def check(self, s: Settings, models: Collection[str] | None) -> None:
        super().check(s, models)
        p = self.prompt
        if not p:
            return
        if type(p) is str:
            n, what = len(p), "characters"
        elif type(p[0]) is int:
            n, what = len(p), "tokens"
        else:
            n, what = sum(map(len, p)), "characters" if type(p[0]) is str else "tokens"  # type: ignore[arg-type]
        if n > s.max_message_chars:
            raise _too_long("prompt", what, s.max_message_chars)


class ResponsesRequest(GatewayRequest):
    """The Responses API (``client.responses.create`` and ``.stream``); the other fields pass to
    vLLM, which checks them."""

    input: str | list[dict[str, Any]] = Field(description="Text or a list of input items.")
    max_output_tokens: OutputTokens = None
    stream: bool | None = False

    capped = ("max_output_tokens",)


class SimpleChatRequest(BaseModel):
    """The simple API: either ``prompt`` (one user message) or ``messages``; sent to vLLM as a
    chat completion, so the rules of :class:`ChatCompletionRequest` apply."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="One user message; alternative to messages.")
    system: str | None = Field(None, description="Optional system message, used with prompt.")
    messages: Messages | None = None
    model: str | None = Field(None, description="Defaults to the served model.")
    max_tokens: OutputTokens = None
    temperature: float | None = Field(None, description="vLLM checks the range.")
    top_p: float | None = Field(None, description="vLLM checks the range.")


class Usage(BaseModel):
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int


class SimpleChatResponse(BaseModel):
    id: str | None = None
    content: str
    model: str | None
    finish_reason: str | None = None
    usage: Usage
    latency_ms: float


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = Field(None, description="The gateway's codes are strings; vLLM's own errors keep its numeric code.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
