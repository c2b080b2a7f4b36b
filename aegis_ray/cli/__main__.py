from aegis_ray.cli.main import app

app(prog_name="aegis")
