"""The machinery every run shares: config resolution (config), the run folder and its checkpoints
(run, lock, paths), the one training loop (loop), the non-finite guard (guard), ranks and
collectives (distributed), Weights & Biases (tracking) and videos (video, media)."""
