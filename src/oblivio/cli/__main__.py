from oblivio.cli import app

app()
