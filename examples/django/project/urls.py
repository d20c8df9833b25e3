from django.urls import path

from matches import views

urlpatterns = [
    path("webhooks/switchboard", views.switchboard_webhook),
]
