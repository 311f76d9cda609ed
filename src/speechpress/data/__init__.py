"""Data: speech synthesis, the generated corpus, manifests and benchmark loaders."""
