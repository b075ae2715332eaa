# Reserved by the lead for issue 21's classifier stage (fill in its operations; keep the name and the dependency).
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("training", "0013_screening")]

    operations = []
