from smartfed.quota.allocation import allocate_quotas, device_quotas, smooth_scores
from smartfed.quota.importance import IMPORTANCE_KINDS
from smartfed.quota.planner import QuotaPlanner

__all__ = ["IMPORTANCE_KINDS", "QuotaPlanner", "allocate_quotas", "device_quotas", "smooth_scores"]
