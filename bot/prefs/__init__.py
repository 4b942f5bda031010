"""What users and communities chose: subscriptions and community settings."""
