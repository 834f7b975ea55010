"""`smartfed sizes`: router parameters and upload bytes per router kind, next to a LoRA."""


def add_parser(sub) -> None:
    p = sub.add_parser("sizes", help="router parameters and upload bytes per router kind, next to a LoRA")
    p.add_argument("--model", default="smollm2-135m-instruct", help="base model: name, .gguf, folder or hub id")
    p.add_argument("--adapters", nargs="*", default=None, help="PEFT LoRA adapter folders (default: a shape-only pool)")
    p.add_argument("--modules", type=int, default=4, help="shape-only pool: number of LoRA modules")
    p.add_argument("--rank", type=int, default=8, help="shape-only pool: rank of each module, and of the LoRA compared")
    p.add_argument("--no-llama2-7b", action="store_true", help="skip the table from LLaMA-2-7B's published shapes")
    p.add_argument("--memory", choices=("llama2-7b", "qwen2-7b"), help="only the per-client memory estimate of a 7B model "
                   "(published shapes on the meta device) for fp32, bf16 and 4-bit bases, next to FedIT's")
    p.add_argument("--router", default="linear", choices=("linear", "activation", "lowrank", "arrow", "static", "module"),
                   help="--memory: the router kind")
    p.set_defaults(run=run)


def run(args) -> None:
    from smartfed.metrics.sizes import (
        LLAMA2_7B, QWEN2_7B, format_size_table, meta_model, router_sizes, shape_only_pool, upload_bytes,
    )

    if args.memory:
        from smartfed.metrics.memory import format_memory_table, memory_rows

        big = meta_model({"llama2-7b": LLAMA2_7B, "qwen2-7b": QWEN2_7B}[args.memory])
        pool = shape_only_pool(big, args.modules, args.rank)
        title = f"{args.memory} (published shapes, no weights), {args.modules} modules of rank {args.rank} on all linear types"
        print(format_memory_table(memory_rows(big, pool, args.router, args.rank), title, args.router, args.rank))
        return
    from smartfed.models import load_base_model
    from smartfed.pool import ExpertPool
    from smartfed.routers import ROUTER_KINDS

    model, _ = load_base_model(args.model)
    if args.adapters:
        pool, what = ExpertPool.from_adapters(args.adapters, model), f"pool of {len(args.adapters)} adapters"
    else:
        pool, what = shape_only_pool(model, args.modules, args.rank), f"{args.modules} modules of rank {args.rank} on all linear types"
    base_params = sum(p.numel() for p in model.parameters())
    kinds = tuple(k for k in ROUTER_KINDS if k != "module-arrow")  # training-free: nothing to send
    rows = router_sizes(model, pool, kinds, args.rank)
    measured = {} if not args.adapters else {k: upload_bytes(model, pool, k) for k in kinds}
    print(format_size_table(rows, base_params, f"{args.model}, {what}", measured))
    if not args.no_llama2_7b:
        big = meta_model(LLAMA2_7B)
        big_pool = shape_only_pool(big, args.modules, args.rank)
        print()
        print(format_size_table(router_sizes(big, big_pool, kinds, args.rank), sum(p.numel() for p in big.parameters()),
                                f"LLaMA-2-7B (published shapes, no weights), {args.modules} modules of rank {args.rank}"))
