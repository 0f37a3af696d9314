"""The machinery every run shares: config resolution (config), the run folder and its checkpoints
(run, lock, paths), the one training loop (loop), the non-finite guard (guard), ranks and
collectives (distributed, and their sums of moments: moments), spaces as checkpoint data (spaces),
Weights & Biases (tracking), GIFs and the training-video recorder (media), and playing a policy in a
rebuilt copy of a run's env (episodes)."""
