"""Account descriptions become unique: pairs and the pairs file name their accounts by
them, and two accounts of one name made `pairs export` refuse. Existing duplicates are
renamed first ("name (2)", the oldest keeps its name), each rename printed in the release
log so the operator can see what changed."""

from django.db import migrations, models


def rename_duplicates(apps, schema_editor):
    for model_name in ("HerokuAccount", "AwsAccount"):
        model = apps.get_model("scaling", model_name)
        taken = set(model.objects.values_list("description", flat=True))
        seen = set()
        for account in model.objects.order_by("created_at", "id"):
            if account.description not in seen:
                seen.add(account.description)
                continue
            number = 2
            while f"{account.description[:190]} ({number})" in taken:
                number += 1
            new = f"{account.description[:190]} ({number})"
            print(f"\n  {model._meta.verbose_name} #{account.pk}: renamed {account.description!r} to {new!r} "
                  "(account descriptions are now unique)")
            taken.add(new)
            model.objects.filter(pk=account.pk).update(description=new)


class Migration(migrations.Migration):

    dependencies = [
        ('scaling', '0007_decision_search'),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='awsaccount',
            name='description',
            field=models.CharField(error_messages={'unique': 'Another %(model_name)s already has this description; give this one its own, since pairs and the pairs file name accounts by their description.'}, help_text='What these credentials are for. Unique: pairs and the pairs file name their account by it.', max_length=200, unique=True),
        ),
        migrations.AlterField(
            model_name='herokuaccount',
            name='description',
            field=models.CharField(error_messages={'unique': 'Another %(model_name)s already has this description; give this one its own, since pairs and the pairs file name accounts by their description.'}, help_text="What this authorization is, e.g. the name given to it in Heroku's Account → Applications page. Unique: pairs and the pairs file name their account by it.", max_length=200, unique=True),
        ),
    ]
