"""python -m trainer [--config FILE.yaml ...] [--option value ...]: one Reinforce++ run (see --help)."""
import sys

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    from .controller import Trainer

    trainer = Trainer(cfg)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
