# A generation job counts the replies the content screen blocked (issue 21).
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("training", "0014_screen_classifier")]

    operations = [
        migrations.AddField(
            model_name="generationjob",
            name="replies_screened",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
