"""Request and response shapes, for the OpenAPI document and the simple API.

The pass-through routes validate bodies with :mod:`.core.validation` (fast, on the
parsed dict); these models describe the same rules for clients and fuzzers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Role
    content: str | list[dict[str, Any]] | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="Must be a model the gateway serves (else 404).")
    max_tokens: int | None = Field(None, ge=1, description="At most GATEWAY_MAX_TOKENS_CAP.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=16)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] = Field(...)


class ResponsesRequest(BaseModel):
    """The Responses API (``client.responses.create``); vLLM validates the fields the gateway does not."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="Must be a model the gateway serves (else 404).")
    input: str | list[dict[str, Any]] = Field(..., description="Text or a list of input items.")
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1, description="At most GATEWAY_MAX_TOKENS_CAP.")
    stream: bool | None = False


class PassThroughRequest(BaseModel):
    """Embeddings, score, rerank, tokenize, detokenize: passed to vLLM as sent (vLLM validates them;
    the gateway checks the model name). They need a model that supports them (pooling models for
    embeddings, score and rerank)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, description="Must be a model the gateway serves (else 404).")


class SimpleChatRequest(BaseModel):
    """The simple API: either ``prompt`` (one user message) or ``messages``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="One user message; alternative to messages.")
    system: str | None = Field(None, description="Optional system message, used with prompt.")
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    model: str | None = Field(None, description="Defaults to the served model.")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)


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
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
