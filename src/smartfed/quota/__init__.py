from smartfed.quota.allocation import allocate_quotas, device_quotas, smooth_scores

__all__ = ["allocate_quotas", "device_quotas", "smooth_scores"]
