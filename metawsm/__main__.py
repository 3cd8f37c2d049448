"""``python -m metawsm ...``: the same CLI as the ``metawsm`` console script."""

from metawsm.entry import main

if __name__ == "__main__":
    main()
