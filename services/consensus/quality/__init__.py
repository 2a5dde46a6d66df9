"""Annotator quality: accuracy against gold, agreement with consensus, spammer / adversarial flags."""
