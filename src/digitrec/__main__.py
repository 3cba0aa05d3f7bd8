from digitrec.cli import main

if __name__ == "__main__":  # not when a reading process of `digitrec serve` is spawned from it
    raise SystemExit(main())
