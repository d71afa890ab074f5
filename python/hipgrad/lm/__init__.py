"""Language models: the GPT, text and tokens, training by steps, fine-tuning and generation.

The model itself is `hg.build_model("gpt", ...)` (hipgrad.lm.model); its layers live in
hipgrad.nn.transformer. The inference engine for it is `hg.InferenceEngine.from_model(gpt)`
(hipgrad.lm.engine.GPTEngine)."""
