"""The chat engine: providers (OpenAI, Azure OpenAI, offline extractive), retrieval over
the chatbot's knowledge, tools that become cards, pricing and budgets, and the turn
that ties them together and writes the conversation."""
