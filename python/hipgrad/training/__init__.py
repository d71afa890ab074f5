"""The training side: `Trainer` (trainer.py: the epoch loop, history, curves), checkpoints
(checkpoint.py: safetensors weights + JSON sidecar, resume, fine-tuning) and the model zoo
(models.py: build_model by name, rebuilt from a checkpoint's spec). Data sets live in
hipgrad.data."""
