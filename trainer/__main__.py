"""python -m trainer [--config FILE.yaml ...] [--option value ...] [--print_config]: one Reinforce++ run
(see --help; --print_config prints the resolved configuration and exits)."""
import sys

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show = "--print_config" in argv
    if show:
        argv.remove("--print_config")
    try:
        cfg = load_config(argv)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    if show:  # the resolved configuration, as YAML a run can be started from
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from .controller import Trainer

    trainer = Trainer(cfg)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
