"""Algorithm component: fine-tunes timm classifiers (train) and serves them (serve)."""
