from smartfed.models.loading import DEFAULT_MODEL, DEVICES, DTYPES, QUANTIZED, cache_dir, load_base_model, load_quantized, resolve_device, resolve_model_folder

__all__ = ["DEFAULT_MODEL", "DEVICES", "DTYPES", "QUANTIZED", "cache_dir", "load_base_model", "load_quantized", "resolve_device", "resolve_model_folder"]
