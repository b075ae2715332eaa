# Reserved by the lead for issue 19's workflow fields (fill in its operations; keep the name and the dependency).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("annotate", "0012_import_jobs")]

    operations = []
