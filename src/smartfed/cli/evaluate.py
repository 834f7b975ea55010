"""`smartfed eval`: score a base model, a model with routed experts, or a plain LoRA on the suites."""

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="math exact match, GSM-Hard program-aided, code pass@1, held-out loss")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 | 4bit | 8bit")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--lora", help="a PEFT LoRA adapter folder to evaluate on its own")
    what.add_argument("--pool", nargs="+", help="adapter folders (or one pool .safetensors file) to route")
    p.add_argument("--router", default="static", help="router kind with --pool (default static: see --weights)")
    p.add_argument("--weights", help="--router static: comma-separated weight per pool module (default uniform)")
    p.add_argument("--router-state", help="a router state .safetensors file to load (from a run)")
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--suites", default="gsm8k,mgsm-zh,gsm-hard-pal,humaneval,mbpp",
                   help="comma-separated suites; 'loss:<composition>' scores held-out loss")
    p.add_argument("--limit", type=int, default=50, help="items per suite (the first N of the upstream file)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=_count, default=0, help="cap on generated tokens per item (0: each suite's own limit)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", help="write results (scores and every output) as JSON here")
    p.add_argument("--require-isolation", action="store_true",
                   help="refuse to run generated code without namespaces and an unprivileged uid")
    p.set_defaults(run=run)


def _count(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, found {value}")
    return value


def _model(args):
    from safetensors.torch import load_file

    from smartfed import ExpertPool, attach_experts, load_base_model, load_router_state_dict
    from smartfed.experts import set_module_weights

    model, tokenizer = load_base_model(args.model, args.dtype, args.device)
    if args.lora:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, args.lora).eval(), tokenizer, f"lora:{args.lora}"
    if not args.pool:
        return model, tokenizer, "base"
    pool = ExpertPool.load(args.pool[0]) if args.pool[0].endswith(".safetensors") else ExpertPool.from_adapters(args.pool, model)
    attach_experts(model, pool, router=args.router, top_k=args.top_k)
    if args.router_state:
        load_router_state_dict(model, load_file(args.router_state))
    elif args.router == "static" and args.weights:
        weights = [float(w) for w in args.weights.split(",")]
        if len(weights) != len(pool.modules):
            raise SystemExit(f"--weights expected {len(pool.modules)} values (one per pool module), found {len(weights)}")
        set_module_weights(model, weights)
    return model.eval(), tokenizer, f"pool:{','.join(m.name for m in pool.modules)} router:{args.router}"


def run(args) -> None:
    from smartfed.data import composition_splits
    from smartfed.eval.generate import heldout_loss
    from smartfed.eval.suites import run_suite
    from smartfed.io import atomic_write_text

    from smartfed.eval.sandbox import isolation, require_isolation

    if args.require_isolation:
        require_isolation()
    print(f"generated code runs with {isolation()}")
    model, tokenizer, label = _model(args)
    results = []
    for name in args.suites.split(","):
        if name.startswith("loss:"):
            heldout = composition_splits(name.removeprefix("loss:"), args.data_dir).heldout
            heldout = heldout[: args.limit]
            value = heldout_loss(model, tokenizer, heldout, batch_size=args.batch_size, desc=name)
            results.append({"suite": name, "n": len(heldout), "loss": value})
            print(f"{label} | {name} | n={len(heldout)} | loss {value:.4f}", flush=True)
        else:
            r = run_suite(model, tokenizer, name, args.limit, args.batch_size, args.data_dir, max_new_tokens=args.max_new_tokens)
            results.append({"suite": name, "n": r.n, "score": r.score, "items": r.items})
            print(f"{label} | {name} | n={r.n} | score {100 * r.score:.1f}%", flush=True)
    if args.out:
        atomic_write_text(args.out, json.dumps({"model": args.model, "what": label, "code_sandbox_isolation": isolation(), "results": results}, ensure_ascii=False, indent=1))
        print(f"wrote {Path(args.out)}")
