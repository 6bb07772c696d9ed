from worldrt.host.cli import run

run()
