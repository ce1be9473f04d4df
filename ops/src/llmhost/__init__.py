"""llmhost: the ops CLI of llm-hosting (size, cost, prewarm, chat, sagemaker-invoke, smoke)."""

__version__ = "0.1.0"
