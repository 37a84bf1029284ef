try:
    from fewshot_eval.cli import main
except KeyboardInterrupt as e:  # Ctrl-C in the first milliseconds: one line and 130, as later (cli.main)
    from fewshot_eval.cli import _interrupted, _stopped_exit

    _stopped_exit(_interrupted(e))

if __name__ == "__main__":
    main()
