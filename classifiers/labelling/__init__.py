"""Teacher labelling: prompt templates, a local-model teacher, an OpenAI-compatible HTTP teacher, a label store."""
