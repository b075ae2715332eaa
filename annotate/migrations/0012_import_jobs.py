# Reserved by the lead for issue 18's import jobs (fill in its operations; keep the name and the dependency).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("annotate", "0011_screening")]

    operations = []
