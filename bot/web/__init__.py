"""The public read-only JSON API (`moodring serve`): FastAPI handlers over the store."""
