"""The preference benchmark's outputs: the before/after picture and the printed table
(kept apart from bench_preference.py, which runs the experiment)."""

from __future__ import annotations

from pathlib import Path


def judge_picture(ev: dict, rm: dict, path: Path) -> None:
    from parrot.viz.figure import new_figure, save_png

    fig = new_figure(11, 3.6)
    panels = [("Judge: addresses the user by name", ev["judge"], "share of answers"),
              ("Reward model: mean reward", ev["reward"], "r(x, y)")]
    for i, (title, values, ylabel) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, i)
        means = [values[k]["mean"] for k in ("before", "after")]
        errors = [[m - values[k]["ci95"][0] for m, k in zip(means, ("before", "after"), strict=True)],
                  [values[k]["ci95"][1] - m for m, k in zip(means, ("before", "after"), strict=True)]]
        ax.bar(["before DPO", "after DPO"], means, yerr=errors, capsize=6,
               color=["#999999", "#3a7bd5"])
        ax.set(title=title, ylabel=ylabel)
        ax.grid(alpha=0.3, axis="y")
    ax = fig.add_subplot(1, 3, 3)
    labels = ["reward model", f"length ({rm['length_baseline']['direction']})"]
    accs = [rm["held_accuracy"], rm["length_baseline"]["held_accuracy"]]
    cis = [rm["held_ci95"], rm["length_baseline"]["held_ci95"]]
    ax.bar(labels, accs, yerr=[[a - c[0] for a, c in zip(accs, cis, strict=True)],
                               [c[1] - a for a, c in zip(accs, cis, strict=True)]],
           capsize=6, color=["#3a7bd5", "#999999"])
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax.set(title="Held-out pair accuracy (95% CI)", ylabel="share ranked right", ylim=(0, 1))
    ax.grid(alpha=0.3, axis="y")
    save_png(fig, path)



def print_table(r: dict) -> None:
    ev, rm, sp = r["evaluation"], r["reward_model"], r["speed"]

    def ci(x: dict) -> str:
        return f"{x['mean']:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]"

    print(f"{'held-out measure':<34}{'before DPO':>26}{'after DPO':>26}")
    print(f"{'judge rate (95% CI)':<34}{ci(ev['judge']['before']):>26}{ci(ev['judge']['after']):>26}")
    print(f"{'reward-model reward':<34}{ci(ev['reward']['before']):>26}{ci(ev['reward']['after']):>26}")
    print(f"{'KL(pi || pi_ref), nats/answer':<34}{0.0:>26.3f}{ci(ev['kl']['after']):>26}")
    p = ev["perplexity"]
    print(f"{'perplexity (embedded corpus)':<34}{p['before']:>26.3f}{p['after']:>26.3f}"
          f"   ratio {p['ratio']:.4f}")
    lb = rm["length_baseline"]
    print(f"reward model held-out accuracy {rm['held_accuracy']:.3f} "
          f"[{rm['held_ci95'][0]:.3f}, {rm['held_ci95'][1]:.3f}] on {rm['held_pairs']} pairs; "
          f"length baseline ({lb['direction']}) {lb['held_accuracy']:.3f}")
    if "by_prompt" in rm:
        bp = rm["by_prompt"]
        print(f"  bootstrap over {bp['rm']['prompts']} prompts: reward model {ci(bp['rm'])}, "
              f"length {ci(bp['length'])}")
    print(f"speed: DPO {sp['tokens_per_s']['dpo']:.0f} tok/s, SFT same rows "
          f"{sp['tokens_per_s']['sft_same_rows']:.0f} tok/s; DPO/SFT per pair "
          f"{sp['dpo_over_sft_per_pair']:.2f}x, same rows {sp['dpo_over_sft_same_rows']:.2f}x")
