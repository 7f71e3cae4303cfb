#!/usr/bin/python3
"""PyTorch reference for bench/train_step: the same five configurations, the same step.

A training step is forward, cross-entropy loss, backward and one AdamW step (lr 1e-4,
weight decay 0.01 except on biases and LayerNorm weights, as mnemo's defaults), on synthetic
data of the configuration's shapes, in training mode (dropout as the configuration says).
The models are written in plain PyTorch with Hugging Face's module semantics (no
transformers library needed): MLP 784-512-512-10 with ReLU; ViTForImageClassification
(pre-LN, CLS token, learned positions, final LayerNorm on every token, classifier on token 0);
BertForMaskedLM (post-LN, attention mask added to the scores, MLM head whose decoder is tied
to the word embeddings, logits for every position and cross-entropy with ignore_index -100).

Each configuration and thread count runs in a child process, so the peak resident memory it
reports belongs to that run alone. Output, one line per run, the format of bench/train_step:
    NAME threads=N ms_per_step=X peak_rss_mb=Y

Optional: this is for comparing both frameworks on one machine. It needs Debian's
python3-torch (run it with /usr/bin/python3); mnemo's C benchmarks never use it.
"""
import argparse
import math
import resource
import subprocess
import sys
import time

CONFIGS = ["mlp", "vit-fm", "vit-ti16", "bert-tiny", "bert-mini"]

# name -> (kind, settings); batch sizes and shapes of the standard configurations (as in bench/train_step)
SETTINGS = {
    "mlp": ("mlp", dict(sizes=[784, 512, 512, 10], batch=128)),
    "vit-fm": ("vit", dict(image=28, patch=4, channels=1, dim=128, depth=6, heads=4, mlp=512, classes=10,
                           batch=64, dropout=0.0)),
    "vit-ti16": ("vit", dict(image=224, patch=16, channels=3, dim=192, depth=12, heads=3, mlp=768, classes=1000,
                             batch=8, dropout=0.0)),
    "bert-tiny": ("bert", dict(vocab=30522, dim=128, depth=2, heads=2, mlp=512, max_pos=512, types=2, seq=128,
                               batch=32, dropout=0.1)),
    "bert-mini": ("bert", dict(vocab=30522, dim=256, depth=4, heads=4, mlp=1024, max_pos=512, types=2, seq=128,
                               batch=16, dropout=0.1)),
}


def build(name, mask_prob, mlm_logits, seed):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    kind, s = SETTINGS[name]

    class SelfAttention(nn.Module):
        """Hugging Face's BertSelfAttention / ViTSelfAttention with its output dense."""

        def __init__(self, dim, heads, dropout):
            super().__init__()
            self.heads, self.head_dim = heads, dim // heads
            self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
            self.dense = nn.Linear(dim, dim)
            self.drop = nn.Dropout(dropout)

        def split(self, x):
            b, t, _ = x.shape
            return x.view(b, t, self.heads, self.head_dim).permute(0, 2, 1, 3)

        def forward(self, x, mask=None):
            q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores + mask
            probs = self.drop(F.softmax(scores, dim=-1))
            ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
            return self.dense(ctx.view(x.shape[0], x.shape[1], -1))

    class Layer(nn.Module):
        def __init__(self, dim, heads, mlp, dropout, eps, pre_ln):
            super().__init__()
            self.attn = SelfAttention(dim, heads, dropout)
            self.ln1, self.ln2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
            self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
            self.drop = nn.Dropout(dropout)
            self.pre_ln = pre_ln

        def forward(self, x, mask=None):
            if self.pre_ln:  # ViTLayer
                h = x + self.drop(self.attn(self.ln1(x), mask))
                return h + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(h)))))
            h = self.ln1(x + self.drop(self.attn(x, mask)))  # BertLayer
            return self.ln2(h + self.drop(self.fc2(F.gelu(self.fc1(h)))))

    class ViT(nn.Module):
        def __init__(self, c):
            super().__init__()
            n = (c["image"] // c["patch"]) ** 2
            self.cls_token = nn.Parameter(torch.randn(1, 1, c["dim"]) * 0.02)
            self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, c["dim"]) * 0.02)
            self.projection = nn.Conv2d(c["channels"], c["dim"], c["patch"], stride=c["patch"])
            self.drop = nn.Dropout(c["dropout"])
            self.layers = nn.ModuleList(
                [Layer(c["dim"], c["heads"], c["mlp"], c["dropout"], 1e-12, True) for _ in range(c["depth"])])
            self.layernorm = nn.LayerNorm(c["dim"], eps=1e-12)
            self.classifier = nn.Linear(c["dim"], c["classes"])

        def forward(self, pixels, labels):
            x = self.projection(pixels).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.drop(x + self.position_embeddings)
            for layer in self.layers:
                x = layer(x)
            logits = self.classifier(self.layernorm(x)[:, 0, :])
            return F.cross_entropy(logits, labels)

    class Bert(nn.Module):
        def __init__(self, c):
            super().__init__()
            d = c["dim"]
            self.word = nn.Embedding(c["vocab"], d, padding_idx=0)
            self.position = nn.Embedding(c["max_pos"], d)
            self.token_type = nn.Embedding(c["types"], d)
            self.emb_ln = nn.LayerNorm(d, eps=1e-12)
            self.drop = nn.Dropout(c["dropout"])
            self.layers = nn.ModuleList([Layer(d, c["heads"], c["mlp"], c["dropout"], 1e-12, False)
                                         for _ in range(c["depth"])])
            self.transform = nn.Linear(d, d)
            self.transform_ln = nn.LayerNorm(d, eps=1e-12)
            self.decoder_bias = nn.Parameter(torch.zeros(c["vocab"]))
            self.vocab = c["vocab"]

        def forward(self, ids, attention_mask, labels):
            b, t = ids.shape
            pos = torch.arange(t).unsqueeze(0)
            types = torch.zeros_like(ids)
            x = self.word(ids) + self.token_type(types) + self.position(pos)
            x = self.drop(self.emb_ln(x))
            mask = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
            for layer in self.layers:
                x = layer(x, mask)
            if mlm_logits == "masked":  # only the labelled rows (what mnemo's mn_bert_mlm_loss does)
                keep = labels.view(-1) != -100
                x, labels = x.reshape(-1, x.shape[-1])[keep], labels.view(-1)[keep]
            h = self.transform_ln(F.gelu(self.transform(x)))
            logits = F.linear(h, self.word.weight, self.decoder_bias)  # tied decoder
            return F.cross_entropy(logits.view(-1, self.vocab), labels.reshape(-1))

    if kind == "mlp":
        sizes = s["sizes"]
        mods = []
        for i in range(len(sizes) - 1):
            mods.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        net = nn.Sequential(*mods)
        x = torch.randn(s["batch"], sizes[0])
        y = torch.randint(0, sizes[-1], (s["batch"],))
        model = net
        loss_fn = lambda: F.cross_entropy(net(x), y)
    elif kind == "vit":
        model = ViT(s)
        x = torch.randn(s["batch"], s["channels"], s["image"], s["image"])
        y = torch.randint(0, s["classes"], (s["batch"],))
        loss_fn = lambda: model(x, y)
    else:
        model = Bert(s)
        ids = torch.randint(0, s["vocab"], (s["batch"], s["seq"]))
        masked = torch.rand(s["batch"], s["seq"]) < mask_prob
        labels = torch.where(masked, ids, torch.full_like(ids, -100))
        attention = torch.ones(s["batch"], s["seq"], dtype=torch.long)
        loss_fn = lambda: model(ids, attention, labels)

    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)  # biases and LayerNorm weights
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    model.train()
    return model, opt, loss_fn


def run_child(name, threads, args):
    import torch

    torch.set_num_threads(threads)
    model, opt, loss_fn = build(name, args.mask_prob, args.mlm_logits, args.seed)
    times = []
    start, last_print = time.perf_counter(), 0.0
    total = args.warmup + args.steps
    loss = None
    for step in range(total):
        clock = time.process_time if args.cpu_time else time.perf_counter
        t0 = clock()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        dt = clock() - t0
        if step >= args.warmup:
            times.append(dt)
        elapsed = time.perf_counter() - start
        if not args.quiet and elapsed - last_print > 2.0:
            per = elapsed / (step + 1)
            print(f"\r{name} threads={threads} step {step + 1}/{total} loss {loss.item():.4f} "
                  f"{per * 1e3:.1f} ms/step ETA {per * (total - step - 1):.0f} s   ", end="", file=sys.stderr)
            last_print = elapsed
    if not args.quiet and last_print > 0:
        print("\r" + " " * 79 + "\r", end="", file=sys.stderr)
    if not math.isfinite(loss.item()):
        print(f"torch_train_step: {name}: the loss is not finite", file=sys.stderr)
        return 1
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{name} threads={threads} ms_per_step={median * 1e3:.2f} peak_rss_mb={rss_mb:.1f}", flush=True)
    return 0


def thread_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of counts such as 1,2, got '{text}'")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got '{text}'")
    return values


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="mlp, vit-fm, vit-ti16, bert-tiny, bert-mini "
                   "(default: all five)")
    p.add_argument("--threads", type=thread_list, default=[1, 2], help="thread counts, comma separated (default 1,2)")
    p.add_argument("--steps", type=int, default=20, help="timed steps; the median is reported (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--mask-prob", type=float, default=0.15, help="BERT: probability that a position carries an "
                   "MLM label (default 0.15)")
    p.add_argument("--mlm-logits", choices=["all", "masked"], default="all",
                   help="BERT: vocabulary logits for every position as BertForMaskedLM computes them (all, the "
                   "default), or only for the labelled rows, as mnemo's mn_bert_mlm_loss does (masked)")
    p.add_argument("--cpu-time", action="store_true", help="report the process CPU time per step (all threads) "
                   "instead of wall time; for comparing single-thread runs on a busy machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--child", nargs=2, metavar=("NAME", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if not 0 < args.mask_prob <= 1:
        p.error("--mask-prob must be in (0, 1]")
    if args.child:
        return run_child(args.child[0], int(args.child[1]), args)
    for c in args.configs:
        if c not in SETTINGS:
            p.error(f"unknown configuration '{c}' (known: {', '.join(CONFIGS)})")
    try:
        import torch  # noqa: F401  (fail early with a clear message)
    except ImportError:
        print("torch_train_step: PyTorch is not installed (Debian: apt-get install python3-torch; run with "
              "/usr/bin/python3)", file=sys.stderr)
        return 2
    failures = 0
    passthrough = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--mask-prob", str(args.mask_prob),
                   "--mlm-logits", args.mlm_logits, "--seed", str(args.seed)] + (["--quiet"] if args.quiet else []) \
        + (["--cpu-time"] if args.cpu_time else [])
    for name in args.configs or CONFIGS:
        for threads in args.threads:
            r = subprocess.run([sys.executable, __file__, "--child", name, str(threads)] + passthrough)
            if r.returncode != 0:
                print(f"torch_train_step: {name} with {threads} thread(s) failed", file=sys.stderr)
                failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
