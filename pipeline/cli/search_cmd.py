"""(placeholder: this stage's commands land here)."""
