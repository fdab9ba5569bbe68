from django.urls import path

from costs import views

app_name = "costs"
urlpatterns = [
    path("costs/", views.cost_page, name="page"),
    path("costs/export/", views.cost_export, name="export"),
    path("costs/budgets/", views.budget_save, name="budget_save"),
    path("costs/budgets/<int:budget_id>/remove/", views.budget_remove, name="budget_remove"),
    path("costs/prices/", views.prices, name="prices"),
    path("costs/prices/<int:price_id>/correct/", views.price_correct, name="price_correct"),
]
