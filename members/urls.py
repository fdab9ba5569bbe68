from django.urls import path

from members import views

app_name = "members"
urlpatterns = [
    path("settings/members/", views.members, name="list"),
    path("settings/members/add/", views.member_add, name="add"),
    path("settings/members/<int:user_id>/role/", views.member_role, name="role"),
    path("settings/members/<int:user_id>/remove/", views.member_remove, name="remove"),
]
