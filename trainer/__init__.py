"""The lean trainer: reads cache shards; augmentations, models, loss, loop, evaluation, search. Never decodes audio."""
