from smartfed.pool.adapter import LoraAdapter, LoraMatrix, read_adapter
from smartfed.pool.expert_pool import ExpertPool, MatrixExperts, ModuleInfo

__all__ = ["ExpertPool", "LoraAdapter", "LoraMatrix", "MatrixExperts", "ModuleInfo", "read_adapter"]
