"""The Dreamer/DisWM world model: the model and its distillation (model), the RSSM (rssm), image
encoders and decoders (codecs), actor and critic learning in imagination (behaviour), the replay
buffer (replay) and offline video datasets (datasets)."""
