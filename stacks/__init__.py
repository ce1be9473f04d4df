"""Stacks: composition only. Each wires constructs from `llm_hosting_constructs` for one environment."""
