from smartfed.models.loading import DEFAULT_MODEL, cache_dir, load_base_model, resolve_model_folder

__all__ = ["DEFAULT_MODEL", "cache_dir", "load_base_model", "resolve_model_folder"]
